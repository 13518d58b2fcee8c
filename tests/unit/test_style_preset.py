"""Lightroom presets as styles: reading .xmp/.lrtemplate safely, rendering the settings as a 3D LUT,
and refining a preset with pairs (``worker/style/preset.py``, ``develop.py``, ``train(start=…)``).

The presets are written here by Adobe's published ``crs:`` (Camera Raw Settings) XMP schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.commands import cli
from worker.errors import JobInputError
from worker.imaging.colour import linear_to_srgb, srgb_to_linear
from worker.models import lut3d
from worker.style import model as style_model
from worker.style import preset
from worker.style.cube import read_cube
from worker.style.develop import render_lut, to_style
from worker.style.metrics import psnr

_XMP_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
   crs:PresetType="Normal" crs:Version="15.0" crs:ProcessVersion="11.0" crs:HasSettings="True"
"""


def xmp(curves: dict[str, list[tuple[int, int]]] | None = None, body: str = "", **settings: str) -> bytes:
    """An XMP develop preset: ``settings`` as ``crs:`` attributes, ``curves`` as ``rdf:Seq`` of "x, y"."""
    attrs = "".join(f'   crs:{k}="{v}"\n' for k, v in settings.items())
    children = '   <crs:Name><rdf:Alt><rdf:li xml:lang="x-default">Test</rdf:li></rdf:Alt></crs:Name>\n'
    for key, points in (curves or {}).items():
        items = "".join(f"<rdf:li>{x}, {y}</rdf:li>" for x, y in points)
        children += f"   <crs:{key}><rdf:Seq>{items}</rdf:Seq></crs:{key}>\n"
    text = _XMP_HEAD + attrs + "   >\n" + children + body + "  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"
    return text.encode()


def lut_of(data: bytes, name: str = "p.xmp") -> torch.Tensor:
    return torch.from_numpy(render_lut(preset.parse(data, name)))


def through(lut: torch.Tensor, colours: list[tuple[float, float, float]]) -> np.ndarray:
    """sRGB colours (0–1) through a LUT with trilinear interpolation, as phase 1 applies it."""
    px = torch.tensor(colours, dtype=torch.float32).view(1, -1, 3)
    out: np.ndarray = lut3d.apply_lut(lut.unsqueeze(0), px)[0].numpy().astype(np.float64)
    return out


def grey(v: float) -> tuple[float, float, float]:
    return (v, v, v)


def chroma(rgb: np.ndarray) -> np.ndarray:
    out: np.ndarray = rgb.max(-1) - rgb.min(-1)
    return out


# -- what each setting does ------------------------------------------------------------------------
def test_an_identity_preset_gives_the_identity_lut() -> None:
    zeros = {
        f"{p}{h}": "0" for p in ("HueAdjustment", "SaturationAdjustment", "LuminanceAdjustment") for h in preset.HUES
    }
    data = xmp(
        curves={"ToneCurvePV2012": [(0, 0), (255, 255)], "ToneCurvePV2012Red": [(0, 0), (255, 255)]},
        Exposure2012="+0.00", Contrast2012="0", Highlights2012="0", Shadows2012="0", Whites2012="0",
        Blacks2012="0", Vibrance="0", Saturation="0", SplitToningShadowSaturation="0", WhiteBalance="As Shot",
        IncrementalTemperature="0", Clarity2012="+35", Dehaze="+10", **zeros,
    )  # fmt: skip
    settings = preset.parse(data, "identity.xmp")
    assert np.abs(render_lut(settings) - lut3d.identity_lut(33).numpy()).max() < 1e-6
    assert dict(settings.ignored)["Clarity2012"] == preset.LOCAL  # listed, not applied
    assert "Dehaze" in dict(settings.ignored)


def test_exposure_plus_one_is_one_stop_on_mid_tones_and_rolls_off_highlights() -> None:
    lut = lut_of(xmp(Exposure2012="+1.00"))
    mids = [0.05, 0.1, 0.18, 0.25]  # linear light
    out = through(lut, [grey(float(linear_to_srgb(v))) for v in mids])
    ratio = srgb_to_linear(out[:, 0]) / np.array(mids)
    assert np.allclose(ratio, 2.0, atol=0.06), ratio
    bright = through(lut, [grey(0.8), grey(0.9), grey(1.0)])[:, 0]
    assert np.all(np.diff(bright) > 0) and bright[-1] > 0.995  # brighter, still distinct: no hard clip
    assert np.allclose(chroma(out), 0.0, atol=1e-3)  # greys stay grey


def test_contrast_is_an_s_curve_around_mid_grey() -> None:
    lut = lut_of(xmp(Contrast2012="+60"))
    dark, mid, light = through(lut, [grey(0.2), grey(0.4613), grey(0.8)])[:, 0]
    assert dark < 0.2 - 0.02 and light > 0.8 + 0.02 and abs(mid - 0.4613) < 0.005


def test_highlights_and_shadows_move_only_their_tones() -> None:
    lut = lut_of(xmp(Highlights2012="-100", Shadows2012="+100"))
    out = through(lut, [grey(0.0), grey(0.3), grey(0.5), grey(0.75), grey(1.0)])[:, 0]
    assert out[1] > 0.3 + 0.05 and out[3] < 0.75 - 0.05  # shadows lifted, highlights pulled down
    assert abs(out[0]) < 0.01 and abs(out[4] - 1.0) < 0.01  # black and white stay


def test_a_negative_green_saturation_desaturates_greens_only() -> None:
    lut = lut_of(xmp(SaturationAdjustmentGreen="-100"))
    colours = [(0.25, 0.7, 0.2), (0.8, 0.2, 0.15), (0.2, 0.3, 0.85), (0.9, 0.55, 0.2)]  # green, red, blue, orange
    before, after = np.array(colours), through(lut, colours)
    assert chroma(after[0]) < 0.1 * chroma(before[0])
    assert np.abs(after[1:] - before[1:]).max() < 1.5 / 255  # reds, blues and oranges untouched


def test_hsl_hue_and_luminance_act_on_their_hue() -> None:
    lut = lut_of(xmp(HueAdjustmentBlue="+100", LuminanceAdjustmentBlue="-100"))
    blue, red = through(lut, [(0.2, 0.3, 0.85), (0.8, 0.2, 0.15)])
    assert blue[0] > blue[1]  # blue turned toward purple (red rises above green)
    assert (blue @ [0.2126, 0.7152, 0.0722]) < 0.3 * 0.7152 + 0.2 * 0.2126 + 0.85 * 0.0722  # darker
    assert np.abs(red - [0.8, 0.2, 0.15]).max() < 1.5 / 255


def test_split_toning_tints_shadows_only_or_highlights_only() -> None:
    tones = [grey(0.08), grey(0.2), grey(0.85), grey(0.95)]
    shadows = through(lut_of(xmp(SplitToningShadowHue="220", SplitToningShadowSaturation="60")), tones)
    assert shadows[0, 2] > shadows[0, 0] + 0.01 and shadows[1, 2] > shadows[1, 0] + 0.02  # blue shadows
    assert chroma(shadows[2:]).max() < 1.5 / 255  # highlights untouched
    lights = through(lut_of(xmp(SplitToningHighlightHue="40", SplitToningHighlightSaturation="60")), tones)
    assert lights[2, 0] > lights[2, 2] + 0.03 and lights[3, 0] > lights[3, 2] + 0.01  # warm highlights
    assert chroma(lights[:2]).max() < 1.5 / 255  # shadows untouched


def test_split_toning_balance_shifts_the_split() -> None:
    def tint_at(v: float, balance: str) -> float:
        data = xmp(SplitToningHighlightHue="40", SplitToningHighlightSaturation="60", SplitToningBalance=balance)
        return float(chroma(through(lut_of(data), [grey(v)]))[0])

    assert tint_at(0.4, "+100") > tint_at(0.4, "0") + 0.01 > tint_at(0.4, "-100") + 0.02


def test_tone_curve_points_are_honoured() -> None:
    points = [(0, 0), (64, 40), (128, 128), (192, 220), (255, 255)]
    lut = lut_of(xmp(curves={"ToneCurvePV2012": points}))
    out = through(lut, [grey(x / 255) for x, _ in points])[:, 0] * 255
    assert np.abs(out - [y for _, y in points]).max() < 1.5
    red = lut_of(xmp(curves={"ToneCurvePV2012Red": [(0, 0), (128, 160), (255, 255)]}))
    r, g, b = through(red, [grey(128 / 255)])[0] * 255
    assert abs(r - 160) < 1.5 and abs(g - 128) < 0.5 and abs(b - 128) < 0.5


def test_incremental_white_balance_warms_and_an_as_shot_temperature_is_kept() -> None:
    warm = through(lut_of(xmp(IncrementalTemperature="+50")), [grey(0.5)])[0]
    assert warm[0] > warm[1] > warm[2] and warm[0] - warm[2] > 0.05
    cool = through(lut_of(xmp(IncrementalTemperature="-50")), [grey(0.5)])[0]
    assert cool[2] > cool[0] + 0.05
    magenta = through(lut_of(xmp(IncrementalTint="+50")), [grey(0.5)])[0]
    assert magenta[1] < magenta[0] - 0.02 and magenta[1] < magenta[2] - 0.02
    kept = preset.parse(xmp(WhiteBalance="As Shot", Temperature="3200", Tint="+10"), "sidecar.xmp")
    assert kept.temperature is None and "Temperature" in dict(kept.ignored)
    assert np.abs(render_lut(kept) - lut3d.identity_lut(33).numpy()).max() < 1e-6
    custom = through(lut_of(xmp(WhiteBalance="Custom", Temperature="7500", Tint="0")), [grey(0.5)])[0]
    assert custom[0] > custom[2] + 0.03  # above daylight: warmer


def test_vibrance_lifts_dull_colours_more_than_saturated_ones() -> None:
    lut = lut_of(xmp(Vibrance="+100"))
    colours = [(0.45, 0.5, 0.55), (0.1, 0.3, 0.9)]
    gain = chroma(through(lut, colours)) / chroma(np.array(colours))
    assert gain[0] > 1.5 and gain[0] > gain[1] + 0.3


def test_black_and_white_with_toning() -> None:
    lut = lut_of(xmp(ConvertToGrayscale="True", GrayMixerBlue="-60"))
    out = through(lut, [(0.2, 0.3, 0.85), (0.85, 0.3, 0.2), grey(0.5)])
    assert chroma(out).max() < 1e-3  # grey
    plain = through(lut_of(xmp(ConvertToGrayscale="True")), [(0.2, 0.3, 0.85)])
    assert out[0, 0] < plain[0, 0] - 0.03  # the gray mix darkened the blue


def test_local_and_nested_settings_are_listed_never_applied() -> None:
    nested = """   <crs:MaskGroupBasedCorrections><rdf:Seq><rdf:li>
    <rdf:Description crs:What="Correction" crs:CorrectionAmount="1" crs:Exposure2012="+4" crs:LocalExposure2012="1"/>
   </rdf:li></rdf:Seq></crs:MaskGroupBasedCorrections>
"""
    settings = preset.parse(xmp(body=nested, Texture="+20", GrainAmount="25", SomeFutureKey="3"), "p.xmp")
    assert settings.exposure == 0.0  # the mask's own exposure is not the preset's
    ignored = dict(settings.ignored)
    assert ignored["MaskGroupBasedCorrections"] == ignored["Texture"] == ignored["GrainAmount"] == preset.LOCAL
    assert settings.unknown == ("SomeFutureKey",)
    assert settings.name == "Test"


# -- .lrtemplate ---------------------------------------------------------------------------------
LRTEMPLATE = """s = {
	id = "2F6C1C1E-6A1B-4B7D-9C3E-6A0C4E0F1D2A",
	internalName = "Warm Fade",
	title = LOC "$$$/Presets/WarmFade=Warm Fade",
	type = "Develop",
	value = {
		settings = {
			Exposure2012 = 0.35,
			Contrast2012 = -12, -- a comment
			Highlights2012 = -30,
			SaturationAdjustmentGreen = -40,
			SplitToningShadowHue = 210,
			SplitToningShadowSaturation = 15,
			ToneCurvePV2012 = {
				0,
				20,
				128,
				131,
				255,
				245,
			},
			ToneCurveName2012 = "Custom",
			Sharpness = 40,
		},
		uuid = "0D0E3F4A-1111-2222-3333-444455556666",
	},
	version = 0,
}
"""


def test_lrtemplate_and_xmp_of_the_same_settings_give_the_same_lut() -> None:
    from_lua = preset.parse(LRTEMPLATE.encode(), "warm.lrtemplate")
    from_xmp = preset.parse(
        xmp(
            curves={"ToneCurvePV2012": [(0, 20), (128, 131), (255, 245)]},
            Exposure2012="+0.35", Contrast2012="-12", Highlights2012="-30", SaturationAdjustmentGreen="-40",
            SplitToningShadowHue="210", SplitToningShadowSaturation="15", ToneCurveName2012="Custom", Sharpness="40",
        ),
        "warm.xmp",
    )  # fmt: skip
    assert from_lua.name == "Warm Fade"
    assert sorted(from_lua.applied) == sorted(from_xmp.applied)
    assert dict(from_lua.ignored) == dict(from_xmp.ignored) == {"Sharpness": preset.LOCAL}
    assert np.array_equal(render_lut(from_lua), render_lut(from_xmp))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('s = { value = { settings = { Exposure2012 = os.execute("rm -rf /") } } }', id="call"),
        pytest.param("s = { value = { settings = { Exposure2012 = 1 + 2 } } }", id="expression"),
        pytest.param("s = { value = { settings = { Exposure2012 = 1 ", id="truncated"),
        pytest.param("x = 5", id="no-table"),
        pytest.param("s = { value = { } }", id="no-settings"),
        pytest.param("s = " + "{" * 100 + "}" * 100, id="too-deep"),
    ],
)
def test_an_lrtemplate_is_read_never_run(text: str) -> None:
    with pytest.raises(JobInputError) as err:
        preset.parse(text.encode(), "p.lrtemplate")
    assert "\n" not in err.value.message and "p.lrtemplate" in err.value.message


# -- hostile files ---------------------------------------------------------------------------------
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/" crs:Name="&lol3;"/></rdf:RDF></x:xmpmeta>
"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/">&e;</x:xmpmeta>"""
EXTERNAL_DTD = (
    b"""<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd"><x:xmpmeta xmlns:x="adobe:ns:meta/"/>"""
)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(BILLION_LAUGHS, id="entity-expansion"),
        pytest.param(EXTERNAL, id="external-entity"),
        pytest.param(EXTERNAL_DTD, id="external-dtd"),
    ],
)
def test_a_hostile_xmp_is_refused_with_one_line(data: bytes) -> None:
    with pytest.raises(JobInputError) as err:
        preset.parse(data, "evil.xmp")
    message = err.value.message
    assert "\n" not in message and "DOCTYPE" in message and "evil.xmp" in message


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"<x>&undefined;</x>", "not valid XML"),
        (b"<html><body>hello</body></html>", "not XMP"),
        (b"<a>" * 100 + b"</a>" * 100, "deeper"),
        (xmp(Exposure2012="bright"), "not a number"),
        (xmp(Exposure2012="nan"), "not a finite number"),
    ],
)
def test_files_that_are_not_presets_say_what_is_wrong(data: bytes, says: str) -> None:
    with pytest.raises(JobInputError, match=says):
        preset.parse(data, "p.xmp")


def test_out_of_range_values_are_clamped_and_noted() -> None:
    settings = preset.parse(xmp(Exposure2012="+9", SaturationAdjustmentRed="-250"), "p.xmp")
    assert settings.exposure == 5.0 and settings.hsl_saturation[0] == -100.0
    assert len(settings.notes) == 2


# -- the style and the starting point ------------------------------------------------------------
def photos() -> list[np.ndarray]:
    from skimage import data

    imgs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), np.asarray(data.immunohistochemistry())]
    return [np.ascontiguousarray(i[::4, ::4, :3]) for i in imgs]


LOOK = xmp(
    curves={"ToneCurvePV2012": [(0, 18), (70, 66), (190, 198), (255, 250)]},
    Exposure2012="+0.30", Contrast2012="+20", Highlights2012="-30", Shadows2012="+20", Vibrance="+25",
    SaturationAdjustmentGreen="-50", HueAdjustmentOrange="-10", LuminanceAdjustmentBlue="-30",
    SplitToningShadowHue="210", SplitToningShadowSaturation="20", SplitToningHighlightHue="45",
    SplitToningHighlightSaturation="15", IncrementalTemperature="+8",
)  # fmt: skip


def test_a_preset_is_a_style_to_apply_save_and_export(tmp_path: Path) -> None:
    settings = preset.parse(LOOK, "look.xmp")
    style = to_style(settings)
    lut = render_lut(settings)
    photo = photos()[0]
    expected = lut3d.apply_lut_image_pillow(lut, photo)
    assert np.array_equal(style.apply(photo, "cpu"), expected)
    loaded = style_model.load(style_model.save(style))
    assert np.array_equal(loaded.apply(photo, "cpu"), expected)
    assert loaded.metadata["method"] == "preset" and loaded.metadata["preset"]["name"] == "Test"
    assert np.abs(loaded.cube() - lut).max() < 1e-6


def test_the_preset_command_writes_a_model_and_a_cube(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "look.xmp").write_bytes(LOOK)
    args = ["style", "preset", str(tmp_path / "look.xmp"), "--out", str(tmp_path / "look.pt")]
    assert cli.main([*args, "--cube", str(tmp_path / "look.cube")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["method"] == "preset" and "Exposure2012" in result["applied"]
    cube = read_cube((tmp_path / "look.cube").read_text())
    assert np.abs(cube - render_lut(preset.parse(LOOK, "look.xmp"))).max() < 2e-6
    assert style_model.load_file(tmp_path / "look.pt").metadata["method"] == "preset"
    (tmp_path / "evil.xmp").write_bytes(EXTERNAL)
    assert cli.main(["style", "preset", str(tmp_path / "evil.xmp"), "--cube", str(tmp_path / "x.cube")]) != 0
    assert "DOCTYPE" in capsys.readouterr().err


@pytest.mark.slow
def test_pairs_refine_a_preset_from_where_it_starts() -> None:
    from worker.style.train import TrainConfig, train

    lut = render_lut(preset.parse(LOOK, "look.xmp"))

    def touch(img: np.ndarray) -> np.ndarray:  # the photographer's own touch after the preset: warmer
        return np.asarray(np.clip(img * np.array([1.06, 1.0, 0.92]) + 0.5, 0, 255), dtype=np.uint8)

    imgs = photos()
    pairs = [(b, touch(lut3d.apply_lut_image_pillow(lut, b))) for b in imgs]
    train_pairs, (held_before, held_after) = pairs[:4], pairs[4]
    cfg = TrainConfig(steps=120, long_edge=160)
    style = train(train_pairs, device="cpu", config=cfg, start=lut)
    assert style.metadata["started_from_lut"] is True
    assert style.model.config.input_lut and style.model.input_lut is not None
    preset_only = lut3d.apply_lut_image_pillow(lut, held_before)
    refined = style.apply(held_before, "cpu")
    from_scratch = train(train_pairs, device="cpu", config=cfg).apply(held_before, "cpu")
    assert psnr(refined, held_after) > psnr(preset_only, held_after) + 3  # the pairs' touch was learned
    assert psnr(refined, held_after) > psnr(from_scratch, held_after)  # and the preset helped
    data = style_model.save(style)
    assert torch.load(__import__("io").BytesIO(data), weights_only=True)["version"] == 2
    assert np.array_equal(style_model.load(data).apply(held_before, "cpu"), refined)


def test_with_nothing_learned_the_start_is_the_model() -> None:
    from worker.style.train import TrainConfig, train

    lut = render_lut(preset.parse(LOOK, "look.xmp"))
    imgs = photos()[:3]
    pairs = [(b, lut3d.apply_lut_image_pillow(lut, b)) for b in imgs]  # the afters are the preset exactly
    style = train(pairs, device="cpu", config=TrainConfig(steps=2, long_edge=96, refit=False), start=lut)
    out = style.apply(imgs[0], "cpu")
    assert psnr(out, pairs[0][1]) > 40


def test_train_refines_a_preset_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    (tmp_path / "look.xmp").write_bytes(LOOK)
    lut = render_lut(preset.parse(LOOK, "look.xmp"))
    for side in ("before", "after"):
        (tmp_path / "pairs" / side).mkdir(parents=True)
    for i, img in enumerate(photos()[:3]):
        Image.fromarray(img).save(tmp_path / "pairs" / "before" / f"p{i}.png")
        Image.fromarray(lut3d.apply_lut_image_pillow(lut, img)).save(tmp_path / "pairs" / "after" / f"p{i}.png")
    out = tmp_path / "refined.pt"
    args = ["style", "train", str(tmp_path / "pairs"), "--out", str(out), "--epochs", "2", "--no-progress"]
    assert cli.main([*args, "--preset", str(tmp_path / "look.xmp"), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["pairs_used"] == 3
    style = style_model.load_file(out)
    assert style.metadata["started_from_lut"] is True and style.metadata["preset"]["name"] == "Test"
    (tmp_path / "pairs" / "before" / "p2.png").unlink()
    assert cli.main([*args, "--preset", str(tmp_path / "look.xmp")]) != 0
    assert "found 2 usable before/after pairs" in capsys.readouterr().err
