"""Acceptance: ``apelier-worker process`` on one folder holding every awkward upload and good photos.

Each bad file fails alone with a reason a photographer can read; every good one comes out right
(upright, right colours, right size). The database-level version of this gallery lives with the
daemon's tests.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import photo_files as pf
from tests.unit.test_decode import delta_e, psnr

BAD = {
    "empty.jpg": "empty",
    "cut_short.jpg": "truncated",
    "bomb.png": "limit",
    "notes.jpg": "text file",
    "dot.png": "too small",
}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray], dict]:
    folder = tmp_path_factory.mktemp("gallery")
    coffee, astronaut, chelsea = (
        pf.wheel_photo("coffee"),
        pf.wheel_photo("astronaut"),
        pf.wheel_photo("chelsea"),
    )
    upright = np.ascontiguousarray(astronaut[:, 60:460])
    expected: dict[str, np.ndarray] = {}
    files = {
        "empty.jpg": b"",
        "cut_short.jpg": pf.truncated_jpeg(coffee),
        "bomb.png": pf.png_bomb(20000, 20000),
        "notes.jpg": b"Shot list for Saturday:\n- first look\n- family formals\n",
        "press_cmyk.jpg": pf.cmyk_jpeg(coffee),
        "scan16.png": pf.png16(chelsea),
        "bw.jpg": pf.grey_jpeg(chelsea),
        "sideways.jpg": pf.oriented_jpeg(upright, 6),
        "adobe_rgb.jpg": pf.adobe_rgb_jpeg(coffee),
        "iphone.heic": pf.heic(astronaut),
        "dot.png": pf.encode(np.array([[[250, 120, 30]]], np.uint8), "PNG"),
        "panorama.jpg": pf.panorama(20000, 300),
        "plain.jpg": pf.jpeg(pf.wheel_photo("rocket")),
        "flower.png": pf.encode(pf.wheel_photo("flower"), "PNG"),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    expected["press_cmyk.jpg"] = coffee
    expected["scan16.png"] = chelsea
    expected["sideways.jpg"] = upright
    expected["iphone.heic"] = astronaut
    stored = np.asarray(Image.open(io.BytesIO(files["adobe_rgb.jpg"])).convert("RGB"))
    out = folder / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "process",
            str(folder),
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 3, result.stderr[-3000:]  # 3: some photos failed, the rest done
    report = {Path(e["file"]).name: e for e in json.loads((out / "report.json").read_text())["photos"]}
    report["_stdout"] = result.stdout
    report["_adobe_stored"] = stored
    return out, expected, report


def edited(out: Path, name: str) -> np.ndarray:
    with Image.open(out / "edited" / f"{Path(name).stem}.jpg") as img:
        return np.asarray(img.convert("RGB"))


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def block_means(image: np.ndarray, block: int = 8) -> np.ndarray:
    h, w = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    cut = image[:h, :w].astype(np.float64)
    return cut.reshape(h // block, block, w // block, block, 3).mean(axis=(1, 3))


def test_every_file_is_in_the_report(gallery) -> None:
    _, _, report = gallery
    names = {k for k in report if not k.startswith("_")}
    assert len(names) == 14


@pytest.mark.parametrize(("name", "word"), sorted(BAD.items()))
def test_bad_files_fail_alone_with_a_readable_reason(gallery, name: str, word: str) -> None:
    out, _, report = gallery
    error = report[name]["error"]
    assert error is not None and error["phase"] in {"decode", "analysis"}
    reason = error["reason"]
    assert word in reason and name in reason and "\n" not in reason and "Traceback" not in reason
    assert not (out / "edited" / f"{Path(name).stem}.jpg").exists()
    assert "failed: " in report["_stdout"] and name in report["_stdout"]


def test_good_files_all_come_out(gallery) -> None:
    out, _, report = gallery
    good = [k for k in report if not k.startswith("_") and k not in BAD]
    assert len(good) == 9
    for name in good:
        assert report[name]["error"] is None, (name, report[name]["error"])
        for folder in ("edited", "web", "thumbs"):
            assert (out / folder / f"{Path(name).stem}.jpg").is_file(), (name, folder)


def test_sideways_photo_comes_out_upright(gallery) -> None:
    out, expected, report = gallery
    result = edited(out, "sideways.jpg")
    assert result.shape == expected["sideways.jpg"].shape
    assert psnr(result, expected["sideways.jpg"]) > 28
    assert report["sideways.jpg"]["analysis"]["source"]["orientation"] == 6
    with Image.open(out / "edited" / "sideways.jpg") as img:
        assert img.getexif().get(0x0112, 1) == 1


def test_adobe_rgb_colours_match_the_reference_conversion(gallery) -> None:
    out, _, report = gallery
    reference = pf.reference_to_srgb(report["_adobe_stored"], "adobe")
    result = edited(out, "adobe_rgb.jpg").astype(np.float64)
    # Colour: every 8×8 area of the delivered file within ΔE2000 2 of the reference conversion
    # (per pixel, the delivered JPEG's own compression noise adds to it: mean stays below 1).
    block_de = delta_e(block_means(result), block_means(reference))
    assert float(block_de.max()) < 2.0, block_de.max()
    assert float(delta_e(result, reference).mean()) < 1.0
    assert report["adobe_rgb.jpg"]["analysis"]["source"]["icc_profile"] == "Adobe RGB (1998)"


def test_cmyk_16bit_heic_come_out_with_their_colours(gallery) -> None:
    out, expected, _ = gallery
    assert psnr(edited(out, "press_cmyk.jpg"), expected["press_cmyk.jpg"]) > 27
    assert psnr(edited(out, "scan16.png"), expected["scan16.png"]) > 38
    assert psnr(edited(out, "iphone.heic"), expected["iphone.heic"]) > 30


def test_greyscale_stays_grey(gallery) -> None:
    out, _, _ = gallery
    result = edited(out, "bw.jpg").astype(int)
    assert np.abs(result[..., 0] - result[..., 1]).max() <= 2 and np.abs(result[..., 1] - result[..., 2]).max() <= 2


def test_panorama_sizes(gallery) -> None:
    out, _, report = gallery
    assert size_of(out / "edited" / "panorama.jpg") == (20000, 300)
    assert size_of(out / "web" / "panorama.jpg") == (2048, 31)
    assert size_of(out / "thumbs" / "panorama.jpg") == (400, 6)
    assert report["panorama.jpg"]["analysis"]["quality"]["score"] >= 0
