"""What ``apelier-worker process`` takes from a shoot folder, what it names as skipped, and the output names."""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from worker.commands.process import collect_inputs, expand_inputs, unique_stems


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_shoot_folder_is_searched_with_its_sub_folders_and_every_other_entry_is_named(tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    a = _touch(shoot / "IMG_0001.jpg")
    gif = _touch(shoot / "teaser.gif")
    card2 = _touch(shoot / "card2" / "IMG_0001.JPG")
    deep = _touch(shoot / "card2" / "raw" / "IMG_0002.nef")
    notes = _touch(shoot / "notes.txt")
    _touch(shoot / "Makefile")
    _touch(shoot / ".DS_Store")
    os.symlink(tmp_path / "gone.jpg", shoot / "dead.jpg")
    other = _touch(tmp_path / "elsewhere" / "x.jpg")
    os.symlink(other.parent, shoot / "linked")
    out = shoot / "edited-out"
    _touch(out / "edited" / "IMG_0001.jpg")  # a previous run's output inside the shoot folder

    found = collect_inputs([shoot], exclude=[out])
    assert found.files == [a, card2, deep, gif]
    reasons = {p.name: r for p, r in ((s.path, s.reason) for s in found.skipped)}
    assert reasons == {
        ".DS_Store": "hidden (its name starts with a dot)",
        "Makefile": "not a photo file type (no extension)",
        "dead.jpg": f"a broken link (to {tmp_path / 'gone.jpg'}, which does not exist)",
        "edited-out": "the output folder",
        "linked": "a link to a folder, not followed (name the folder itself to include it)",
        "notes.txt": "not a photo file type (.txt)",
    }
    assert notes not in found.files
    assert found.names() == {
        a: "IMG_0001",
        card2: "card2/IMG_0001",
        deep: "card2/raw/IMG_0002",
        gif: "teaser",
    }


def test_files_named_directly_are_tried_and_a_file_given_twice_runs_once(tmp_path: Path) -> None:
    photo = _touch(tmp_path / "in" / "a.jpg")
    text = _touch(tmp_path / "readme.txt")
    found = collect_inputs([text, tmp_path / "in", photo])
    assert found.files == [text, photo]  # named directly: tried (and fails as a photo, with its reason)
    assert [(s.path, s.reason.split(" (")[0]) for s in found.skipped] == [(photo, "listed twice")]


def test_output_names_never_collide(tmp_path: Path) -> None:
    files = [tmp_path / n for n in ("a.jpg", "a.png", "a-2.jpg", "A.tif", "b/a.jpg")]
    relative = {p: PurePath(p.relative_to(tmp_path)).with_suffix("") for p in files}
    names = unique_stems(files, relative)
    assert list(names.values()) == ["a", "a-2", "a-2-2", "A-3", "b/a"]
    assert len({n.casefold() for n in names.values()}) == len(files)


def test_the_style_commands_still_read_one_folder_level(tmp_path: Path) -> None:
    top = _touch(tmp_path / "after" / "x.jpg")
    _touch(tmp_path / "after" / "sub" / "y.jpg")
    assert expand_inputs([tmp_path / "after"]) == [top]
