"""Gallery-level suggestions: groups of near-duplicates and bursts, the best of each, highlights."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import cv2
import numpy as np
import pytest

from tests import photo_files as pf
from worker.imaging.decode import decode
from worker.phases import analysis
from worker.scene.culling import GalleryItem, default_highlight_count, parse_time, summarize_gallery


def analysed(photo_id: str, image: np.ndarray, exif: dict | None = None) -> GalleryItem:
    frame = decode(pf.jpeg(image), photo_id=photo_id, filename=f"{photo_id}.jpg", max_pixels=10**8)
    return GalleryItem.from_report(photo_id, analysis.analyse(frame.image, []), exif or frame.exif)


@pytest.fixture(scope="module")
def gallery() -> list[GalleryItem]:
    """Five real photos; china and coffee each with near-duplicates (crop, resize, blur)."""
    china, coffee = pf.wheel_photo("china"), pf.wheel_photo("coffee")
    h, w = china.shape[:2]
    return [
        analysed("china", china),
        analysed("china-crop", china[int(h * 0.04) :, int(w * 0.04) :]),
        analysed("china-soft", cv2.GaussianBlur(china, (0, 0), 2.5)),
        analysed("coffee", coffee),
        analysed("coffee-small", cv2.resize(coffee, (300, 200), interpolation=cv2.INTER_AREA)),
        analysed("chelsea", pf.wheel_photo("chelsea")),
        analysed("rocket", pf.wheel_photo("rocket")),
        analysed("astronaut", pf.wheel_photo("astronaut")),
    ]


def test_near_duplicates_are_grouped_and_distinct_photos_are_not(gallery: list[GalleryItem]) -> None:
    result = summarize_gallery(gallery)
    group = {pid: (r["group"] or {}).get("id") for pid, r in result.items()}
    assert group["china"] == group["china-crop"] == group["china-soft"] is not None
    assert group["coffee"] == group["coffee-small"] is not None
    assert group["china"] != group["coffee"]
    for single in ("chelsea", "rocket", "astronaut"):
        assert result[single]["group"] is None


def test_best_of_a_group_is_the_sharp_one(gallery: list[GalleryItem]) -> None:
    result = summarize_gallery(gallery)
    soft = result["china-soft"]
    assert soft["group"]["best"] is False and soft["suggest_cull"] is True
    assert soft["group"]["best_photo_id"] in {"china", "china-crop"}
    assert any("scores higher" in r for r in soft["reasons"])
    bests = [pid for pid, r in result.items() if r["group"] and r["group"]["best"]]
    assert len(bests) == 2


def test_highlights_are_diverse(gallery: list[GalleryItem]) -> None:
    result = summarize_gallery(gallery, highlights=4)
    picked = [pid for pid, r in result.items() if r["highlight"]]
    assert len(picked) == 4
    groups = [result[p]["group"]["id"] for p in picked if result[p]["group"]]
    assert len(groups) == len(set(groups))  # never two of the same group
    ranks = sorted(result[p]["highlight_rank"] for p in picked)
    assert ranks == [1, 2, 3, 4]


def test_suggestions_only(gallery: list[GalleryItem]) -> None:
    result = summarize_gallery(gallery)
    for suggestion in result.values():
        assert set(suggestion) == {"group", "highlight", "highlight_rank", "suggest_cull", "reasons"}
        assert not {"star_rating", "is_culled", "is_sneak_peek"} & set(suggestion)
    json.dumps(result)


def test_burst_frames_group_by_capture_time() -> None:
    """Two frames 0.4 s apart, the camera panned (12 % of the width): too different for the
    near-duplicate rule, grouped as a burst by the capture times; hours apart they stay apart."""
    photo = pf.wheel_photo("astronaut")
    moved = np.ascontiguousarray(photo[:, int(photo.shape[1] * 0.12) :])
    t = datetime(2024, 6, 1, 14, 3, 22)
    a = analysed("frame-1", photo)
    b = analysed("frame-2", moved)
    assert a.phash and b.phash and a.dhash and b.dhash
    distance = bin(int(a.phash, 16) ^ int(b.phash, 16)).count("1")
    distance += bin(int(a.dhash, 16) ^ int(b.dhash, 16)).count("1")
    assert 32 < distance <= 48, distance  # the premise of this test
    cam = "Canon EOS R5"
    burst = [
        GalleryItem(**{**a.__dict__, "captured_at": t, "camera": cam}),
        GalleryItem(**{**b.__dict__, "captured_at": t + timedelta(seconds=0.4), "camera": cam}),
    ]
    result = summarize_gallery(burst)
    assert result["frame-1"]["group"]["kind"] == "burst" and result["frame-2"]["group"] is not None
    apart = [burst[0], GalleryItem(**{**burst[1].__dict__, "captured_at": t + timedelta(hours=2)})]
    assert summarize_gallery(apart)["frame-1"]["group"] is None


def test_closed_eyes_and_weak_photos_are_flagged_not_highlighted() -> None:
    items = [
        GalleryItem("a", "0" * 16, "0" * 16, score=90, closed_eyes=1),
        GalleryItem("b", "f" * 16, "f" * 16, score=20),
        GalleryItem("c", "0f" * 8, "0f" * 8, score=80),
    ]
    result = summarize_gallery(items, highlights=3)
    assert result["a"]["suggest_cull"] and "closed eyes" in result["a"]["reasons"]
    assert result["b"]["suggest_cull"] and not result["b"]["highlight"]
    assert not result["a"]["highlight"] and result["c"]["highlight"]


def test_from_report_reads_the_phase_report_and_exif() -> None:
    ai_edits = {
        "analysis": {
            "phash": "00ff00ff00ff00ff",
            "dhash": "ff00ff00ff00ff00",
            "scene_type": "portrait",
            "quality": {"score": 77, "sharpness": 88.5, "eyes": {"closed": 1}},
        },
        "style": {"applied": False},
    }
    exif = {"make": "Canon", "model": "EOS R5", "captured_at": "2024-06-01T14:03:22.45+02:00"}
    item = GalleryItem.from_report("p1", ai_edits, exif)
    assert item.score == 77 and item.sharpness == 88.5 and item.closed_eyes == 1
    assert item.camera == "Canon EOS R5" and item.scene_type == "portrait"
    assert item.captured_at is not None and item.captured_at.microsecond == 450000


def test_mappings_and_odd_input() -> None:
    assert summarize_gallery([]) == {}
    result = summarize_gallery([{"photo_id": "x", "phash": None, "captured_at": "not a time"}, {"photo_id": "y"}])
    assert result["x"]["group"] is None and result["y"]["group"] is None
    assert parse_time("2024-06-01T14:03:22") == datetime(2024, 6, 1, 14, 3, 22)
    assert parse_time(None) is None


def test_highlight_count_grows_slowly() -> None:
    assert default_highlight_count(1) == 1
    assert default_highlight_count(10) == 6
    assert default_highlight_count(50) == 14
    assert default_highlight_count(3000) == 40


def test_a_large_gallery_is_fast_enough() -> None:
    rng = np.random.default_rng(0)
    items = [
        GalleryItem(f"p{i}", f"{int(rng.integers(0, 2**63)):016x}", f"{int(rng.integers(0, 2**63)):016x}", score=60)
        for i in range(2000)
    ]
    result = summarize_gallery(items)
    assert len(result) == 2000


def test_hashes_survive_a_real_jpeg_round_trip() -> None:
    photo = pf.wheel_photo("flower")
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(photo).save(buf, "WEBP", quality=60)
    a = analysed("flower", photo)
    frame = decode(buf.getvalue(), photo_id="w", filename="w.webp", max_pixels=10**8)
    b = GalleryItem.from_report("flower-webp", analysis.analyse(frame.image, []))
    assert summarize_gallery([a, b])["flower"]["group"] is not None
