"""Style quality: 3-fold cross-validation on the real FiveK Expert-C pairs, printed as JSON.

    python -m benchmarks.style_quality [--pairs DIR] [--seeds 1] [--config '{"steps": 600}'] [--train-pairs 3,5,8]

``--seeds 0`` scores only the methods that need no training (identity, naive, histogram): seconds.

Folds as in DESIGN.md: sort the 12 file names of ``../shared/data/pairs/fivek_deeplpf``;
fold k holds out every third pair starting at k and trains on the other 8.
Every method is scored on the held-out photos (PSNR in dB and mean CIEDE2000,
averaged over the 12 photos):

* ``identity`` — the photo as it came;
* ``naive_lut17`` — DESIGN.md's naive global 17³ LUT: per-bin mean of the
  training edits, looked up by nearest bin (empty bins: identity);
* ``histogram`` — ``worker/style/histogram.py`` fitted on the 8 training *after*
  photos only (no pairs);
* ``lut3d`` — ``worker/style/train.py`` with its default recipe;
* ``old_design`` — quoted from DESIGN.md (19.1 dB), not rerun: that code is not here.

``--train-pairs 3,5,8`` also trains ``lut3d`` on only the first 3 and 5 of each fold's 8 training
pairs (same held-out photos): the few-pairs regime. Training is timed in wall and CPU seconds of
this process, with the load average beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import SHARED_DATA, emit
from worker.models import lut3d
from worker.style import histogram as style_histogram
from worker.style.metrics import delta_e2000, psnr
from worker.style.train import TrainConfig, train

DEFAULT_PAIRS = SHARED_DATA / "pairs" / "fivek_deeplpf"
OLD_DESIGN_PSNR = 19.1  # DESIGN.md: 27M-parameter head, same folds (not rerun here)


def load_pairs(root: Path) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    names = sorted(p.name for p in (root / "before").iterdir())
    pairs = []
    for n in names:
        with Image.open(root / "before" / n) as b, Image.open(root / "after" / n) as a:
            pairs.append((np.array(b.convert("RGB")), np.array(a.convert("RGB"))))
    return names, pairs


def folds(n: int, k: int = 3) -> list[tuple[list[int], list[int]]]:
    out = []
    for f in range(k):
        test = list(range(f, n, k))
        out.append(([i for i in range(n) if i not in test], test))
    return out


def naive_lut(train_pairs: list[tuple[np.ndarray, np.ndarray]], n: int = 17) -> np.ndarray:
    """Per-bin mean of the edits (nearest-bin assignment); empty bins keep the identity."""
    sums = np.zeros((n**3, 3))
    counts = np.zeros(n**3)
    for before, after in train_pairs:
        q = np.rint(before.reshape(-1, 3) / 255.0 * (n - 1)).astype(int)
        idx = (q[:, 0] * n + q[:, 1]) * n + q[:, 2]
        counts += np.bincount(idx, minlength=n**3)
        for c in range(3):
            sums[:, c] += np.bincount(idx, after.reshape(-1, 3)[:, c].astype(float), n**3)
    grid = np.linspace(0, 255, n)
    ident = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], ident)


def apply_naive(table: np.ndarray, image: np.ndarray, n: int = 17) -> np.ndarray:
    q = np.rint(image.reshape(-1, 3) / 255.0 * (n - 1)).astype(int)
    out = table[(q[:, 0] * n + q[:, 1]) * n + q[:, 2]]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(image.shape)


def summary(scores: list[tuple[float, float]]) -> dict[str, Any]:
    arr = np.asarray(scores)
    return {
        "psnr_db": round(float(arr[:, 0].mean()), 3),
        "delta_e2000": round(float(arr[:, 1].mean()), 3),
        "per_photo_psnr_db": [round(float(v), 2) for v in arr[:, 0]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument(
        "--seeds", type=int, default=1, help="train lut3d with this many seeds (mean reported; 0: skip lut3d)"
    )
    parser.add_argument("--config", default="{}", help="JSON overrides of TrainConfig (experiments)")
    parser.add_argument("--train-pairs", default="8", help="comma-separated training set sizes (of each fold's 8)")
    args = parser.parse_args()

    names, pairs = load_pairs(args.pairs)
    overrides = json.loads(args.config)
    model_overrides = overrides.pop("model", {})
    base_cfg = TrainConfig(model=lut3d.LUT3DConfig(**model_overrides), **overrides)
    split = folds(len(pairs))
    order = [i for _, test in split for i in test]

    results: dict[str, list[tuple[float, float]]] = {"identity": [], "naive_lut17": [], "histogram": []}
    for train_idx, test_idx in split:
        table = naive_lut([pairs[i] for i in train_idx])
        hist = style_histogram.fit([pairs[i][1] for i in train_idx])
        for i in test_idx:
            before, after = pairs[i]
            results["identity"].append((psnr(before, after), delta_e2000(before, after)))
            out = apply_naive(table, before)
            results["naive_lut17"].append((psnr(out, after), delta_e2000(out, after)))
            out = hist.apply(before, "cpu")
            results["histogram"].append((psnr(out, after), delta_e2000(out, after)))

    sizes = [int(n) for n in args.train_pairs.split(",")]
    runs = []
    for n_pairs, seed in ((n, s) for n in sizes for s in range(args.seeds)):
        cfg = replace(base_cfg, seed=seed)
        scores: list[tuple[float, float]] = []
        fold_info = []
        for fold, (train_idx, test_idx) in enumerate(split):
            load = round(os.getloadavg()[0], 2)
            wall, cpu = time.perf_counter(), time.process_time()
            style = train([pairs[i] for i in train_idx[:n_pairs]], device="cpu", config=cfg)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            for i in test_idx:
                out = style.apply(pairs[i][0], "cpu")
                scores.append((psnr(out, pairs[i][1]), delta_e2000(out, pairs[i][1])))
            meta = style.metadata
            fold_info.append(
                {
                    "fold": fold,
                    "adaptive": meta["adaptive"],
                    "adaptive_gain_db": meta["adaptive_gain_db"],
                    "heldout_psnr": meta.get("heldout_psnr"),
                    "train_wall_s": round(wall, 1),
                    "train_cpu_s": round(cpu, 1),
                    "load_1min": load,
                    "steps": meta["steps"],
                }
            )
        runs.append({"train_pairs": n_pairs, "seed": seed, **summary(scores), "folds": fold_info})

    report: dict[str, Any] = {
        "dataset": str(args.pairs.name),
        "protocol": "3 folds: sorted names, fold k = every third pair from k, train on the other 8",
        "photos": [names[i] for i in order],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "methods": {name: summary(s) for name, s in results.items()},
        "old_design": {"psnr_db": OLD_DESIGN_PSNR, "note": "quoted from DESIGN.md, not rerun"},
        "lut3d": {
            f"{n}_pairs": {
                "psnr_db": round(float(np.mean([r["psnr_db"] for r in runs if r["train_pairs"] == n])), 3),
                "delta_e2000": round(float(np.mean([r["delta_e2000"] for r in runs if r["train_pairs"] == n])), 3),
            }
            for n in sizes
        }
        | {
            "parameters": lut3d.parameter_count(lut3d.build(base_cfg.model)),
            "runs": runs,
        }
        if runs
        else "not run (--seeds 0)",
    }
    emit("style_quality", report)


if __name__ == "__main__":
    main()
