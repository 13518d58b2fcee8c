"""Gallery-level culling help: near-duplicate and burst groups, the best of each, and highlights.

Runs once per job, after phase 0 has analysed every photo. Pure: it reads what analysis
recorded (perceptual hashes, capture time, quality) and returns *suggestions* per photo,
which the caller merges into ``photos.ai_edits["culling"]``. It never touches the
photographer's own choices (``star_rating``, ``is_culled``, ``is_sneak_peek``).

* **Groups.** Two photos are near-duplicates when their 64-bit pHash and dHash together
  differ in at most :data:`NEAR_DUPLICATE_BITS` of 128 bits (survives resizing,
  recompression, small crops and ±0.3 EV; see ``docs/analysis.md`` for the measurement).
  Frames shot within :data:`BURST_SECONDS` of each other form a burst with a looser
  threshold (:data:`BURST_BITS`): the subject moved between frames. Groups are the connected
  components of those links.
* **Best of a group.** Highest quality score; ties broken by fewer closed eyes, then sharpness,
  then the earlier frame.
* **Highlights.** A diverse pick among each group's best and the single photos: greedy,
  trading quality against similarity to what is already picked (same scene, same moment,
  same scene type), skipping closed eyes and weak photos.

Usage::

    from worker.scene.culling import GalleryItem, summarize_gallery

    items = [GalleryItem.from_report(photo_id, ai_edits, exif_data) for ...]
    for photo_id, suggestion in summarize_gallery(items).items():
        ai_edits[photo_id]["culling"] = suggestion
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

NEAR_DUPLICATE_BITS = 32  # pHash + dHash Hamming distance (of 128) for a near-duplicate
BURST_BITS = 48  # … for two frames of one burst
BURST_SECONDS = 2.0  # frames this close in time (same camera) can form a burst
SAME_MOMENT_SECONDS = 60.0  # highlights prefer photos from different moments
MIN_HIGHLIGHT_SCORE = 45


@dataclass(frozen=True)
class GalleryItem:
    """What culling needs to know about one analysed photo."""

    photo_id: str
    phash: str | None = None
    dhash: str | None = None
    captured_at: datetime | None = None
    camera: str | None = None  # make + model: bursts come from one camera
    score: float | None = None
    sharpness: float | None = None
    closed_eyes: int = 0
    scene_type: str | None = None

    @classmethod
    def from_report(
        cls, photo_id: str, ai_edits: Mapping[str, Any], exif: Mapping[str, Any] | None = None
    ) -> GalleryItem:
        """From a photo's ``ai_edits`` (the phases' report) and ``exif_data`` (the EXIF summary)."""
        analysis = ai_edits.get("analysis", ai_edits)
        quality = analysis.get("quality") or {}
        eyes = quality.get("eyes") or {}
        exif = exif or {}
        camera = " ".join(str(exif[k]) for k in ("make", "model") if exif.get(k)) or None
        return cls(
            photo_id=photo_id,
            phash=analysis.get("phash"),
            dhash=analysis.get("dhash"),
            captured_at=parse_time(exif.get("captured_at")),
            camera=camera,
            score=_number(quality.get("score")),
            sharpness=_number(quality.get("sharpness")),
            closed_eyes=int(eyes.get("closed") or 0),
            scene_type=analysis.get("scene_type"),
        )


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 capture time (as the EXIF summary writes it) or None."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _item(values: Mapping[str, Any]) -> GalleryItem:
    known = set(GalleryItem.__dataclass_fields__)
    fields = {k: v for k, v in values.items() if k in known}
    fields["captured_at"] = parse_time(fields.get("captured_at"))
    return GalleryItem(**fields)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def summarize_gallery(
    items: Iterable[GalleryItem | Mapping[str, Any]], *, highlights: int | None = None
) -> dict[str, dict[str, Any]]:
    """Suggestions per photo id: its group (if any), whether it is the group's best, whether it is
    a highlight, and whether it looks like a cull candidate, each with the reasons."""
    photos = [i if isinstance(i, GalleryItem) else _item(i) for i in items]
    n = len(photos)
    if n == 0:
        return {}
    distance = hash_distances(photos)
    seconds = _time_gaps(photos)
    groups = _group(photos, distance, seconds)
    result: dict[str, dict[str, Any]] = {
        p.photo_id: {"group": None, "highlight": False, "highlight_rank": None, "suggest_cull": False,
                     "reasons": []}
        for p in photos
    }  # fmt: skip
    leaders: list[int] = []
    for number, members in enumerate(sorted(groups, key=min), start=1):
        if len(members) == 1:
            leaders.append(members[0])
            continue
        ranked = sorted(members, key=lambda i: _rank_key(photos[i]))
        leaders.append(ranked[0])
        burst = all(
            math.isfinite(seconds[a, b]) and seconds[a, b] <= BURST_SECONDS * len(members)
            for a in members
            for b in members
        )
        kind = "burst" if burst else "near_duplicate"
        best = photos[ranked[0]]
        for rank, i in enumerate(ranked, start=1):
            entry = result[photos[i].photo_id]
            entry["group"] = {
                "id": f"g{number}",
                "kind": kind,
                "size": len(members),
                "rank": rank,
                "best": rank == 1,
                "best_photo_id": best.photo_id,
            }
            if rank > 1:
                entry["suggest_cull"] = True
                entry["reasons"].append(
                    f"{'burst' if burst else 'near-duplicate'} of {best.photo_id}, which scores higher"
                    if (photos[i].score or 0) < (best.score or 0)
                    else f"{'burst' if burst else 'near-duplicate'} of {best.photo_id}"
                )
    for p in photos:
        entry = result[p.photo_id]
        if p.closed_eyes:
            entry["suggest_cull"] = True
            entry["reasons"].append("closed eyes")
        if p.score is not None and p.score < 30:
            entry["suggest_cull"] = True
            entry["reasons"].append(f"low quality score {p.score:.0f}")
    count = highlights if highlights is not None else default_highlight_count(n)
    for rank, i in enumerate(pick_highlights(photos, leaders, distance, seconds, count), start=1):
        entry = result[photos[i].photo_id]
        entry["highlight"], entry["highlight_rank"] = True, rank
    return result


def default_highlight_count(n: int) -> int:
    """About 2·√n, at most 40: 6 of 10 photos, 14 of 50, 40 of 400 and more."""
    return max(1, min(n, 40, round(2 * math.sqrt(n))))


def _rank_key(p: GalleryItem) -> tuple[float, int, float, float]:
    when = p.captured_at.timestamp() if p.captured_at else math.inf
    return (-(p.score if p.score is not None else -1.0), p.closed_eyes, -(p.sharpness or 0.0), when)


# --- distances ---
def _hash_array(values: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros(len(values), dtype=np.uint64)
    known = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if value:
            try:
                out[i] = np.uint64(int(value, 16))
                known[i] = True
            except ValueError:
                pass
    return out, known


def hash_distances(photos: list[GalleryItem]) -> np.ndarray:
    """N×N pHash+dHash Hamming distances (0–128); a missing dHash counts its pHash twice;
    no hash at all: 128 (never a duplicate)."""
    p, p_known = _hash_array([x.phash for x in photos])
    d, d_known = _hash_array([x.dhash for x in photos])
    n = len(photos)
    out = np.full((n, n), 128, dtype=np.int32)
    for start in range(0, n, 512):  # rows in blocks: memory stays ~N×512
        rows = slice(start, min(n, start + 512))
        dp = np.bitwise_count(p[rows, None] ^ p[None, :]).astype(np.int32)
        dd = np.bitwise_count(d[rows, None] ^ d[None, :]).astype(np.int32)
        both = d_known[rows, None] & d_known[None, :]
        block = np.where(both, dp + dd, 2 * dp)
        known = p_known[rows, None] & p_known[None, :]
        out[rows] = np.where(known, block, 128)
    np.fill_diagonal(out, 0)
    return out


def _time_gaps(photos: list[GalleryItem]) -> np.ndarray:
    """N×N seconds between captures (inf when unknown or from different cameras)."""
    n = len(photos)
    stamps = np.array([p.captured_at.timestamp() if p.captured_at else np.nan for p in photos], dtype=np.float64)
    gaps = np.abs(stamps[:, None] - stamps[None, :])
    names: dict[str, int] = {}
    camera = np.array([names.setdefault(p.camera, len(names)) if p.camera else -1 for p in photos])
    different = (camera[:, None] != camera[None, :]) & (camera[:, None] >= 0) & (camera[None, :] >= 0)
    gaps = np.where(np.isnan(gaps) | different, np.inf, gaps)
    assert gaps.shape == (n, n)
    return gaps


# --- grouping ---
def _group(photos: list[GalleryItem], distance: np.ndarray, seconds: np.ndarray) -> list[list[int]]:
    n = len(photos)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    linked = (distance <= NEAR_DUPLICATE_BITS) | ((seconds <= BURST_SECONDS) & (distance <= BURST_BITS))
    for a, b in zip(*np.nonzero(np.triu(linked, k=1)), strict=True):
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[rb] = ra
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


# --- highlights ---
def pick_highlights(
    photos: list[GalleryItem], candidates: list[int], distance: np.ndarray, seconds: np.ndarray, count: int
) -> list[int]:
    """Greedy diverse selection (maximal marginal relevance) among ``candidates``: each pick
    maximises quality − 40 × its similarity to the closest photo already picked."""

    def eligible(p: GalleryItem) -> bool:
        return not p.closed_eyes and (p.score is None or p.score >= MIN_HIGHLIGHT_SCORE)

    pool = np.array([i for i in candidates if eligible(photos[i])], dtype=np.int64)
    if pool.size == 0:
        return []
    quality = np.array([photos[i].score if photos[i].score is not None else 50.0 for i in pool])
    kinds = np.array([photos[i].scene_type or "" for i in pool])
    closest = np.zeros(pool.size)  # similarity to the closest pick so far
    open_ = np.ones(pool.size, dtype=bool)
    chosen: list[int] = []
    while open_.any() and len(chosen) < count:
        value = np.where(open_, quality - 40.0 * closest, -np.inf)
        k = int(np.argmax(value))
        picked = int(pool[k])
        chosen.append(picked)
        open_[k] = False
        closest = np.maximum(closest, _similarity_to(picked, pool, kinds, distance, seconds))
    return chosen


def _similarity_to(
    j: int, pool: np.ndarray, kinds: np.ndarray, distance: np.ndarray, seconds: np.ndarray
) -> np.ndarray:
    """0–1 per pool photo: how much it shows the same thing as photo ``j`` (look, moment, kind)."""
    look = np.clip(1.0 - distance[pool, j] / 64.0, 0.0, 1.0)  # 0 bits: 1, 64+ bits (unrelated): 0
    moment = (seconds[pool, j] <= SAME_MOMENT_SECONDS).astype(float)
    kind_j = kinds[int(np.nonzero(pool == j)[0][0])] if (pool == j).any() else ""
    kind = ((kinds == kind_j) & (kinds != "")).astype(float)
    return np.minimum(1.0, 0.6 * look + 0.3 * moment + 0.2 * kind)
