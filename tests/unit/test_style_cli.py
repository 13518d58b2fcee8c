"""``apelier-worker style …`` and ``process --style``: the CLI contract, end to end on small real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.commands import cli
from worker.style.cube import read_cube


def _photos() -> list[np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_images

    imgs = [data.astronaut(), data.coffee(), data.rocket(), data.chelsea(), *load_sample_images().images]
    return [np.ascontiguousarray(i[::3, ::3]) for i in imgs]  # small: the CLI contract, not quality


def _look(img: np.ndarray) -> np.ndarray:
    y = (img / 255.0) ** 0.8 * np.array([1.05, 1.0, 0.92])
    return (np.clip(y, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    (root / "before").mkdir()
    (root / "after").mkdir()
    for i, img in enumerate(_photos()):
        Image.fromarray(img).save(root / "before" / f"p{i}.png")
        Image.fromarray(_look(img)).save(root / "after" / f"p{i}.png")
    (root / "before" / "unpaired.png").write_bytes((root / "before" / "p0.png").read_bytes())
    return root


@pytest.fixture(scope="module")
def model_file(pairs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "look.pt"
    code = cli.main(["style", "train", str(pairs_dir), "--out", str(out), "--epochs", "12", "--device", "cpu"])
    assert code == 0
    return out


def test_train_writes_a_loadable_model_with_metrics(model_file: Path) -> None:
    from worker.style import model as style_model

    style = style_model.load_file(model_file)
    assert style.method == "lut3d"
    assert style.metadata["pairs_used"] == 6
    assert style.metadata["heldout_psnr"] > style.metadata["heldout_identity_psnr"]


def test_train_output_is_json_with_psnr_and_delta_e(
    pairs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.pt"
    args = ["style", "train", str(pairs_dir), "--out", str(out), "--epochs", "2", "--no-progress"]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["pairs_used"] == 6
    assert {"heldout_psnr", "heldout_delta_e2000", "heldout_identity_psnr"} <= set(result)


def test_eval_reports_json_with_identity_baseline(
    model_file: Path, pairs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["style", "eval", str(model_file), str(pairs_dir), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"] == 6
    assert result["method"] == "lut3d"
    assert result["psnr_db"] > result["identity"]["psnr_db"] + 5
    assert result["delta_e2000"] < result["identity"]["delta_e2000"]


def test_apply_writes_styled_photos(model_file: Path, pairs_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "styled"
    src = pairs_dir / "before" / "p1.png"
    assert cli.main(["style", "apply", str(model_file), str(src), "--out", str(out), "--device", "cpu"]) == 0
    styled = np.asarray(Image.open(out / "p1.png"))
    before = np.asarray(Image.open(src))
    target = np.asarray(Image.open(pairs_dir / "after" / "p1.png"))
    assert styled.shape == before.shape
    assert np.abs(styled.astype(int) - target).mean() < np.abs(before.astype(int) - target).mean()


def test_export_cube_is_a_standard_cube(model_file: Path, pairs_dir: Path, tmp_path: Path) -> None:
    cube = tmp_path / "look.cube"
    assert cli.main(["style", "export-cube", str(model_file), "--out", str(cube)]) == 0
    text = cube.read_text()
    assert "LUT_3D_SIZE 33" in text
    lut = read_cube(text)
    assert lut.shape == (3, 33, 33, 33)
    like = tmp_path / "like.cube"
    photo = pairs_dir / "before" / "p2.png"
    assert cli.main(["style", "export-cube", str(model_file), "--out", str(like), "--like", str(photo)]) == 0
    assert read_cube(like.read_text()).shape == (3, 33, 33, 33)


def test_histogram_method_trains_from_after_photos(
    pairs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "hist.pt"
    decoy = pairs_dir / "after" / "exports.jpg"  # a folder that looks like a photo is not read as one
    decoy.mkdir()
    try:
        assert cli.main(["style", "train", str(pairs_dir), "--out", str(out), "--method", "histogram"]) == 0
    finally:
        decoy.rmdir()
    trained = json.loads(capsys.readouterr().out)
    assert trained["method"] == "histogram"
    assert trained["references_used"] == len(list((pairs_dir / "after").glob("*.png")))
    assert cli.main(["style", "eval", str(out), str(pairs_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "histogram"


def test_photos_over_the_settings_pixel_limit_are_refused(
    model_file: Path,
    pairs_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_MAX_IMAGE_PIXELS", "1000")  # the CLI reads photos with the worker's own limit
    src = pairs_dir / "before" / "p1.png"
    assert cli.main(["style", "apply", str(model_file), str(src), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 3
    assert "WORKER_MAX_IMAGE_PIXELS" in capsys.readouterr().out  # with the summary, as `process` prints its failures


def test_process_with_style_applies_phase_1(
    model_file: Path, pairs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Phase 1 runs, and each entry has the photo row's edit_confidence and needs_review: a photo
    three stops darker than anything the style was trained on is sent to review, and said so."""
    src = tmp_path / "in"
    src.mkdir()
    photo = np.asarray(Image.open(pairs_dir / "before" / "p3.png"))
    Image.fromarray(photo).save(src / "day.jpg", quality=95)
    dark = ((photo / 255.0) ** 2.2 / 8.0) ** (1 / 2.2) * 255.0
    Image.fromarray((dark + 0.5).astype(np.uint8)).save(src / "night.jpg", quality=95)
    out = tmp_path / "out"
    code = cli.main(["process", str(src), "--out", str(out), "--style", str(model_file), "--no-progress"])
    assert code == 0
    entries = {Path(e["file"]).name: e for e in json.loads((out / "report.json").read_text())["photos"]}
    day, night = entries["day.jpg"], entries["night.jpg"]
    for entry in (day, night):
        assert (entry["style"]["applied"], entry["style"]["method"]) == (True, "lut3d")
        assert entry["edit_confidence"] == entry["style"]["confidence"]
    assert day["edit_confidence"] >= 0.5 and day["needs_review"] is False and "review_reasons" not in day
    assert night["edit_confidence"] < 0.5 and night["needs_review"] is True
    assert night["review_reasons"] == [f"style: {night['style']['needs_review']}"]
    assert f"  review: {night['file']}: style: the style is unsure of this photo" in capsys.readouterr().out


def test_errors_are_one_line(pairs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert cli.main(["style", "eval", str(bad), str(pairs_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("apelier-worker:") and "not an Apelier style model" in err and "\n" not in err
    assert cli.main(["style", "train", str(tmp_path), "--out", str(tmp_path / "x.pt")]) == 2
    assert "before" in capsys.readouterr().err
    few = tmp_path / "few"
    (few / "before").mkdir(parents=True)
    (few / "after").mkdir()
    for name in ("a", "b"):
        (few / "before" / f"{name}.png").write_bytes((pairs_dir / "before" / "p0.png").read_bytes())
        (few / "after" / f"{name}.png").write_bytes((pairs_dir / "after" / "p0.png").read_bytes())
    assert cli.main(["style", "train", str(few), "--out", str(tmp_path / "y.pt")]) == 2
    assert "at least 5" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "process",
                str(pairs_dir / "before" / "p0.png"),
                "--out",
                str(tmp_path / "o"),
                "--style",
                str(bad),
            ]
        )
        == 2
    )


def test_training_pairs_are_shrunk_as_they_are_read_and_eval_pairs_are_not(tmp_path: Path) -> None:
    from worker.commands.style import _load_pairs

    big = np.ascontiguousarray(np.tile(_photos()[0], (4, 3, 1)))  # 684×513 px
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    Image.fromarray(big).save(tmp_path / "before" / "a.png")
    Image.fromarray(_look(big)[::2, ::2]).save(tmp_path / "after" / "a.png")  # exported at half size
    _, [(before, after)] = _load_pairs(tmp_path, 512, max_pixels=10**8)
    assert max(before.shape[:2]) == 512 and before.shape == after.shape
    _, [(before, after)] = _load_pairs(tmp_path, max_pixels=10**8)
    assert before.shape == big.shape and after.shape == big.shape


def test_pairs_of_every_format_the_decoder_reads_are_found(tmp_path: Path) -> None:
    """A RAW or AVIF before/after file counts as a pair (the list is the decoder's, not a shorter copy)."""
    from worker.commands.style import find_pairs

    for side in ("before", "after"):
        (tmp_path / side).mkdir()
    for name in ("a.nef", "b.avif", "c.dng"):
        (tmp_path / "before" / name).write_bytes(b"x")
    for name in ("a.jpg", "b.jpg", "c.tif", "d.jpg"):
        (tmp_path / "after" / name).write_bytes(b"x")
    assert [name for name, _, _ in find_pairs(tmp_path)] == ["a", "b", "c"]
