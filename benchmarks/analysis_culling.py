"""Near-duplicate grouping on real photos: precision and recall of "same photo" decisions.

Each real photo (../shared/data befores, faces, power lines, EXIT signs, expert thumbnails, and
the wheel photos) gets variants a photographer's gallery really contains: small crops (3 %, 5 %
and 6 %, from different sides), a 50 % resize, JPEG recompression at quality 50, and ±0.3 EV.
The variants of one photo form one true group; different photos must stay apart. Each variant
goes through the real decode + analysis path (hashes from the phase-0 report), then
``summarize_gallery``. Pairs decide: precision = correct "same group" pairs / all "same group"
pairs; recall = correct "same group" pairs / true pairs. No capture times (worst case: the
burst rule cannot help).

    python -m benchmarks.analysis_culling
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np

from benchmarks.analysis_photos import exposed, jpeg_bytes, named_photos
from worker.imaging.decode import decode
from worker.phases import analysis
from worker.scene.culling import GalleryItem, summarize_gallery

PATTERNS = (
    "pairs/*/before/*",
    "pairs/fivek_multi_expert_thumbs_no_input/expertC/*",
    "faces/*",
    "powerlines/*",
    "exit_signs/*",
)


def variants(img: np.ndarray) -> dict[str, bytes]:
    h, w = img.shape[:2]
    out = {
        "original": img,
        "crop3_top_left": img[int(h * 0.03) :, int(w * 0.03) :],
        "crop6_bottom_right": img[: h - int(h * 0.06), : w - int(w * 0.06)],
        "crop5_centre": img[int(h * 0.05) : h - int(h * 0.05), int(w * 0.05) : w - int(w * 0.05)],
        "resize50": cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
        "plus03ev": exposed(img, 0.3),
        "minus03ev": exposed(img, -0.3),
    }
    encoded = {k: jpeg_bytes(np.ascontiguousarray(v), 92) for k, v in out.items()}
    encoded["recompressed_q50"] = jpeg_bytes(img, 50)
    return encoded


def main() -> None:
    photos = named_photos(*PATTERNS)
    items, truth = [], {}
    t0 = time.perf_counter()
    for group, (name, img) in enumerate(photos):
        for kind, data in variants(img).items():
            photo_id = f"{name}:{kind}"
            frame = decode(data, photo_id=photo_id, filename=f"{photo_id}.jpg", max_pixels=10**9)
            report = analysis.analyse(frame.image, [])
            items.append(GalleryItem.from_report(photo_id, report, frame.exif))
            truth[photo_id] = group
    t1 = time.perf_counter()
    result = summarize_gallery(items)
    t2 = time.perf_counter()
    predicted = {pid: (r["group"]["id"] if r["group"] else pid) for pid, r in result.items()}
    ids = list(truth)
    tp = fp = fn = 0
    false_merges: list[list[str]] = []
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            same_true, same_pred = truth[a] == truth[b], predicted[a] == predicted[b]
            tp += same_true and same_pred
            fp += (not same_true) and same_pred
            fn += same_true and not same_pred
            if same_pred and not same_true and len(false_merges) < 10:
                false_merges.append([a, b])
    per_photo_split = {}
    for group in range(len(photos)):
        members = [pid for pid in ids if truth[pid] == group]
        parts = {predicted[m] for m in members}
        if len(parts) > 1:
            per_photo_split[members[0].split(":")[0]] = len(parts)
    print(
        json.dumps(
            {
                "benchmark": "near_duplicate_grouping",
                "photos": len(photos),
                "variants_per_photo": len(ids) // len(photos),
                "images": len(ids),
                "pair_precision": round(tp / max(1, tp + fp), 4),
                "pair_recall": round(tp / max(1, tp + fn), 4),
                "true_pairs": tp + fn,
                "false_merge_pairs": fp,
                "false_merges": false_merges,
                "photos_split_into_several_groups": per_photo_split,
                "highlights": sum(r["highlight"] for r in result.values()),
                "summarize_s": round(t2 - t1, 3),
                "analyse_s_per_image": round((t1 - t0) / len(ids), 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
