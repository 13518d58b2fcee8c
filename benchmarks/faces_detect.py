"""Face detection: recall, false positives and time per photo on real photos. Prints JSON.

    python -m benchmarks.faces_detect [--detector mtcnn|retinaface] [--device cpu|cuda] [--draw DIR]

Photos: ``../shared/data/faces`` (8 photos, 15 faces; research fixtures, not in the
repo) and the wheel photos (astronaut and grace_hopper: one face each; coffee, rocket
and china: none). Ground truth is the centre of each face, annotated by hand from
the photos; a detection counts as a hit when its box contains an unmatched centre,
otherwise as a false positive. A face whose centre no box contains is a miss.
``--draw DIR`` writes each photo with its boxes (PNG) for a person to check; point it
at a git-ignored folder (e.g. ``out/``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from benchmarks.common import SHARED_DATA
from worker.faces import detect as detectors
from worker.frame import Face
from worker.models import mtcnn, registry, retinaface

SHARED = SHARED_DATA / "faces"

# Face centres (x, y) in full-resolution pixels, by hand.
TRUTH: dict[str, list[tuple[float, float]]] = {
    "face_recognition__biden.jpg": [(555, 364)],
    "face_recognition__kit_with_rose.jpg": [
        (303, 138),
        (118, 158),
    ],  # a cut-off face at the right edge: not counted
    "face_recognition__lin-manuel-miranda.png": [(396, 305)],
    "face_recognition__obama-1080p.jpg": [(999, 252)],
    "face_recognition__obama_and_biden.jpg": [(1236, 481), (843, 518), (1704, 1145)],
    "face_recognition__two_people.jpg": [(863, 154), (312, 125)],
    "gfpgan__00.jpg": [(579, 873), (850, 478)],
    "gfpgan__10045.png": [(404, 474), (417, 177), (210, 158)],
    "wheel:astronaut": [(224, 117)],
    "wheel:grace_hopper": [(260, 226)],
    "wheel:coffee": [],
    "wheel:rocket": [],
    "wheel:china": [],
}


def wheel_photo(name: str) -> np.ndarray:
    if name in {"astronaut", "coffee", "rocket"}:
        from skimage import data

        return np.asarray(getattr(data, name)())
    if name == "grace_hopper":
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return np.asarray(Image.open(path).convert("RGB"))
    if name == "china":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image("china.jpg"))
    raise KeyError(name)


def photos() -> dict[str, np.ndarray]:
    out = {}
    for name in TRUTH:
        if name.startswith("wheel:"):
            out[name] = wheel_photo(name.removeprefix("wheel:"))
        elif (SHARED / name).is_file():
            out[name] = np.asarray(Image.open(SHARED / name).convert("RGB"))
    return out


def score(found: list[Face], truth: list[tuple[float, float]]) -> tuple[int, int, int]:
    """(hits, misses, false positives)."""
    unmatched = list(truth)
    hits = fps = 0
    for face in sorted(found, key=lambda f: -f.score):
        x0, y0, x1, y1 = face.box
        inside = [c for c in unmatched if x0 <= c[0] <= x1 and y0 <= c[1] <= y1]
        if inside:
            unmatched.remove(inside[0])
            hits += 1
        else:
            fps += 1
    return hits, len(unmatched), fps


def draw(image: np.ndarray, found: list[Face], path: Path) -> None:
    vis = image.copy()
    thick = max(2, image.shape[1] // 400)
    for f in found:
        x0, y0, x1, y1 = (int(v) for v in f.box)
        cv2.rectangle(vis, (x0, y0), (x1, y1), (255, 0, 0), thick)
        for x, y in f.landmarks:
            cv2.circle(vis, (int(x), int(y)), thick + 1, (0, 255, 0), -1)
        cv2.putText(vis, f"{f.score:.2f}", (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(vis).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--detector", choices=("mtcnn", "retinaface"), default="mtcnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models-dir", type=Path, default=None, help="for retinaface: WORKER_MODELS_DIR")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draw", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    detector: detectors.MTCNNDetector | detectors.RetinaFaceDetector
    if args.detector == "mtcnn":
        detector = detectors.MTCNNDetector(mtcnn.mtcnn(args.device))
    else:
        from worker.service.config import Settings

        models_dir = args.models_dir or Settings.from_env().models_dir
        path = registry.verify("retinaface-r50", models_dir)
        detector = detectors.RetinaFaceDetector(retinaface.load(path, args.device), args.device)

    images = photos()
    detector.detect([images["wheel:astronaut"]])  # warm-up
    per_photo = {}
    hits = misses = fps = 0
    times = []
    for name, image in images.items():
        t0 = time.perf_counter()
        found = detector.detect([image])[0]
        elapsed = time.perf_counter() - t0
        times.append(elapsed)
        h, m, f = score(found, TRUTH[name])
        hits, misses, fps = hits + h, misses + m, fps + f
        per_photo[name] = {
            "size": f"{image.shape[1]}x{image.shape[0]}",
            "faces": len(TRUTH[name]),
            "found": h,
            "false_positives": f,
            "scores": [round(x.score, 3) for x in found],
            "ms": round(elapsed * 1000, 1),
        }
        if args.draw:
            draw(image, found, args.draw / f"{args.detector}_{name.replace(':', '_').rsplit('.', 1)[0]}.png")
    result = {
        "benchmark": "faces_detect",
        "detector": detector.name,
        "device": args.device,
        "threads": args.threads,
        "max_side": detector.max_side,
        "min_score": detector.min_score,
        "photos": len(images),
        "shared_photos_present": SHARED.is_dir(),
        "faces": hits + misses,
        "recall": round(hits / max(1, hits + misses), 3),
        "false_positives": fps,
        "ms_per_photo_mean": round(1000 * float(np.mean(times)), 1),
        "ms_per_photo_max": round(1000 * float(np.max(times)), 1),
        "per_photo": per_photo,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
