"""The before/after figures of docs/cleanup.md "Fills without smears", drawn from ../shared/data.

    python -m benchmarks.cleanup_fill_figures [--out docs/images]

* ``cleanup_fill_exit_signs.jpg``: real corridor frames (``exit_signs/``), each row the photo, Telea,
  the classical fill, around each sign the detector finds.
* ``cleanup_fill_pasted.jpg``: composites of :mod:`benchmarks.cleanup_fill` (same seed), each row the
  photo, the object pasted over it, Telea, the classical fill.
* ``cleanup_fill_limits.jpg``: where the classical fill still goes wrong, each row the photo (before
  the object was pasted, for a composite), Telea, the classical fill.

Prints one JSON object (the rows drawn).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from benchmarks.cleanup_fill import Sample, build, load
from benchmarks.common import SHARED_DATA
from worker.cleanup.exit_signs import detect_exit_signs, sign_regions
from worker.cleanup.inpaint import fill_regions
from worker.cleanup.opencv_inpaint import OpenCVInpainter
from worker.cleanup.region import Region
from worker.cleanup.working import WorkingImage

FRAMES = (
    "exit_signs/ucsc_exitsign_264357.504598083.jpg",
    "exit_signs/ucsc_exitsign_513614.430410083.jpg",
    "exit_signs/ucsc_exitsign_8761.22361075.jpg",
    "exit_signs/ucsc_exitsign_264908.762079083.jpg",
)
# (background, object, placement) of benchmarks.cleanup_fill composites (per photo 2, seed 0).
PASTED = (("ceiling", "sign", 12), ("ceiling", "sign", 3), ("brick", "sign", 0), ("foliage", "wires", 4))
LIMITS = (("ceiling", "sign", 14), ("brick", "sign", 4))
GAP = 4
WIDTH = 760  # px: each figure is scaled down to at most this wide


def crop_box(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    pad = max(16, max(x1 - x0, y1 - y0) // 2)
    return max(0, x0 - pad), max(0, y0 - pad), min(shape[1], x1 + pad), min(shape[0], y1 + pad)


def row(images: list[np.ndarray], box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    tiles = []
    for img in images:
        tiles += [img[y0:y1, x0:x1], np.full((y1 - y0, GAP, 3), 255, np.uint8)]
    return np.concatenate(tiles[:-1], 1)


def stack(rows: list[np.ndarray]) -> np.ndarray:
    # Every row to the same height-to-width scale: as wide as the widest, keeping its aspect.
    width = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        s = width / r.shape[1]
        out += [cv2.resize(r, (width, round(r.shape[0] * s)), interpolation=cv2.INTER_AREA)]
        out += [np.full((GAP, width, 3), 255, np.uint8)]
    fig = np.concatenate(out[:-1], 0)
    if fig.shape[1] > WIDTH:
        s = WIDTH / fig.shape[1]
        fig = cv2.resize(fig, (WIDTH, round(fig.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return fig


def fills(image: np.ndarray, regions: list[Region]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    telea, _ = fill_regions(image, regions, OpenCVInpainter("telea"))
    classical, stats = fill_regions(image, regions, OpenCVInpainter("auto"))
    return telea, classical, [str(r.get("filled_with")) for r in stats.per_region]


def frame_rows(shared: Path, names: tuple[str, ...]) -> tuple[list[np.ndarray], list[dict[str, object]]]:
    rows: list[np.ndarray] = []
    meta: list[dict[str, object]] = []
    for name in names:
        image = load(shared / name)
        work = WorkingImage(image)
        regions = sign_regions(work, detect_exit_signs(work, "conservative"), "conservative")
        if not regions:
            continue
        telea, classical, used = fills(image, regions)
        rows.append(row([image, telea, classical], crop_box(regions[0].box, image.shape)))
        meta.append({"photo": name, "filled_with": used[0]})
    return rows, meta


def sample_rows(
    samples: list[Sample], picks: tuple[tuple[str, str, int], ...], *, pasted: bool
) -> tuple[list[np.ndarray], list[dict[str, object]]]:
    rows: list[np.ndarray] = []
    meta: list[dict[str, object]] = []
    for background, obj, index in picks:
        chosen = [s for s in samples if s.background == background and s.obj == obj]
        s = chosen[index // 2] if index // 2 < len(chosen) else chosen[0]
        telea, classical, used = fills(s.pasted, [s.region])
        shown = [s.truth, s.pasted, telea, classical] if pasted else [s.truth, telea, classical]
        rows.append(row(shown, crop_box(s.region.box, s.truth.shape)))
        meta.append({"photo": s.photo, "object": obj, "filled_with": used[0]})
    return rows, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    samples = build(2, args.shared)
    result: dict[str, object] = {"benchmark": "cleanup_fill_figures"}
    frames, result["exit_signs"] = frame_rows(args.shared, FRAMES)
    pasted, result["pasted"] = sample_rows(samples, PASTED, pasted=True)
    corner, corner_meta = frame_rows(args.shared, ("exit_signs/ucsc_exitsign_5630.313210708.jpg",))
    limits, limits_meta = sample_rows(samples, LIMITS, pasted=False)
    result["limits"] = corner_meta + limits_meta
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("exit_signs", frames), ("pasted", pasted), ("limits", corner + limits)):
        Image.fromarray(stack(rows)).save(args.out / f"cleanup_fill_{name}.jpg", quality=85)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
