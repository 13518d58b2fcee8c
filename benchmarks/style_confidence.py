"""Style confidence: does ``edit_confidence`` rank phase 1's results? Printed as JSON.

    python -m benchmarks.style_confidence [--steps 120] [--long-edge 400] [--refit] [--photos]

Two parts, each with three folds and a short recipe so a run takes about five minutes on two
shared cores (120 steps, photos at 400 px on the long edge, no refit: see ``docs/benchmarks.md``):

**expert** — real edits. The folds of ``benchmarks/style_quality.py`` (sorted names of
``fivek_deeplpf``; fold k holds out every third pair from k and trains on the other 8). Each fold's
model styles, at 400 px:

* ``heldout`` — its 4 held-out FiveK pairs (PSNR against Expert C's after);
* the other pair sets (``fivek_curl``, ``fivek_deeplpf_png``, ``fivek_namedcurves``,
  ``fivek_fullres_deepupe_pytorch``): other FiveK photos, never trained on (with ``heldout``, the
  *held-out FiveK* set);
* ``shift:*`` — the held-out befores shifted in linear light before styling (−2.5, −1, +1 stops; a
  tungsten and a green cast), scored against the same after: a photographer corrects a photo
  that came out too dark or too warm and then applies the look (as the exposure-correction
  benchmarks built from FiveK do, Afifi et al., CVPR 2021, with Expert C as the target);
* ``faces``, ``powerlines``, ``exit_signs`` — photos with no after: their confidence and how
  many go to review, no PSNR.

**look** — a look written as a function, so every photo has an after: ``benchmarks/style_preset.py``'s
preset rendered by ``worker/style/develop.py`` and its ``tweak``. The photos: every FiveK before
under ``pairs/*/before`` (24, sorted by path); fold k holds out every third from k and trains on the
other 16 pairs (before → look(before)); each model styles its held-out FiveK befores and the photos
of ``faces``, ``powerlines`` and ``exit_signs`` (PSNR against look(photo)).

Reported for each evaluation set: Spearman's ρ between confidence and PSNR, each signal's own ρ
(a larger signal counted as less confident), and for each part how many of the worst ~10 % (by
PSNR) are among the ~10 % least confident; and what the review threshold
(``EditSettings.style_review_threshold``) sends to review, by kind of photo and at other thresholds.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy.stats import spearmanr

from benchmarks.common import SHARED_DATA, emit
from benchmarks.style_preset import PRESET, tweak
from benchmarks.style_quality import DEFAULT_PAIRS, folds, load_pairs
from worker.imaging.resize import shrink
from worker.models import lut3d
from worker.profile import EditSettings
from worker.style import preset
from worker.style.develop import render_lut
from worker.style.metrics import psnr
from worker.style.model import LutStyle
from worker.style.render import render
from worker.style.train import TrainConfig, train

Array = npt.NDArray[np.uint8]
OTHER_PAIRS = ("fivek_curl", "fivek_deeplpf_png", "fivek_namedcurves", "fivek_fullres_deepupe_pytorch")
UNPAIRED = ("faces", "powerlines", "exit_signs")
SHIFTS: dict[str, tuple[float, float, float]] = {  # per-channel gains in linear light
    "ev-2.5": (2**-2.5,) * 3,
    "ev-1": (0.5,) * 3,
    "ev+1": (2.0,) * 3,
    "tungsten": (1.4, 1.0, 0.55),
    "green": (0.85, 1.3, 0.85),
}


def shifted(image: Array, gains: tuple[float, float, float]) -> Array:
    lin = (image.astype(np.float32) / 255.0) ** 2.2 * np.asarray(gains, np.float32)
    return (np.clip(lin, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def read(path: Path, edge: int) -> Array:
    with Image.open(path) as im:
        return shrink(np.asarray(im.convert("RGB")), edge)


@dataclass
class Item:
    group: str
    name: str
    before: Array
    after: Array | None


def items_for(fold_pairs: list[tuple[str, Array, Array]], others: list[Item], unpaired: list[Item]) -> list[Item]:
    out = [Item("heldout", n, b, a) for n, b, a in fold_pairs]
    out += [Item(f"shift:{k}", n, shifted(b, g), a) for n, b, a in fold_pairs for k, g in SHIFTS.items()]
    return out + others + unpaired


SETS: dict[str, tuple[str, ...]] = {  # evaluation set → groups (a group is "part:kind")
    "expert_heldout_fivek": ("expert:heldout", *(f"expert:{o}" for o in OTHER_PAIRS)),
    "expert_with_shifts": (
        "expert:heldout",
        *(f"expert:{o}" for o in OTHER_PAIRS),
        *(f"expert:shift:{k}" for k in SHIFTS),
    ),
    "look_heldout_fivek": ("look:heldout",),
    "look_other_sets": tuple(f"look:{u}" for u in UNPAIRED),
}
LIKE_THE_PAIRS = ("expert:heldout", *(f"expert:{o}" for o in OTHER_PAIRS), "look:heldout")
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)


def rho(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3:
        return None
    return round(float(spearmanr(x, y)[0]), 3)


def ranking(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """ρ of confidence and of each signal (its magnitude, larger = less sure) with PSNR."""
    ps = [r["psnr_db"] for r in rows]
    signals = {k: rho([-abs(r["signals"][k]) for r in rows], ps) for k in rows[0]["signals"]}
    return {"photos": len(rows), "spearman": rho([r["confidence"] for r in rows], ps), "per_signal": signals}


def decile(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ps = np.array([r["psnr_db"] for r in rows])
    cs = np.array([r["confidence"] for r in rows])
    n10 = max(1, round(0.1 * len(rows)))
    worst = set(np.argsort(ps, kind="stable")[:n10].tolist())
    least = set(np.argsort(cs, kind="stable")[:n10].tolist())
    return {
        "photos": len(rows),
        "decile": n10,
        "worst_decile_in_least_confident": len(worst & least),
        "mean_psnr_db_least_confident": round(float(ps[sorted(least)].mean()), 2),
        "mean_psnr_db_rest": round(float(np.delete(ps, sorted(least)).mean()), 2),
    }


def summarise(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    scored = [r for r in rows if r["psnr_db"] is not None]
    sets = {name: ranking([r for r in scored if r["group"] in groups]) for name, groups in SETS.items()}
    parts = {p: decile([r for r in scored if r["group"].startswith(p + ":")]) for p in ("expert", "look")}
    like = [r for r in rows if r["group"] in LIKE_THE_PAIRS]
    groups: dict[str, Any] = {}
    for group in dict.fromkeys(r["group"] for r in rows):
        g = [r for r in rows if r["group"] == group]
        entry: dict[str, Any] = {
            "photos": len(g),
            "mean_confidence": round(float(np.mean([r["confidence"] for r in g])), 3),
            "to_review": round(float(np.mean([r["confidence"] < threshold for r in g])), 3),
        }
        if g[0]["psnr_db"] is not None:
            entry["mean_psnr_db"] = round(float(np.mean([r["psnr_db"] for r in g])), 2)
        groups[group] = entry
    sweep = {}
    for t in sorted({*THRESHOLDS, threshold}):
        sent = [r for r in scored if r["confidence"] < t]
        sweep[str(t)] = {
            "like_the_pairs": round(float(np.mean([r["confidence"] < t for r in like])), 3),
            "all_scored": round(len(sent) / len(scored), 3),
            "mean_psnr_db_sent": round(float(np.mean([r["psnr_db"] for r in sent])), 2) if sent else None,
        }
    return {
        "scored_photos": len(scored),
        "sets": sets,
        "worst_decile": parts,
        "review": {"threshold": threshold, "share_sent": sweep},
        "groups": groups,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--long-edge", type=int, default=400)
    parser.add_argument("--refit", action="store_true", help="train as the default recipe does (≈2× the time)")
    parser.add_argument("--threshold", type=float, default=EditSettings().style_review_threshold)
    parser.add_argument("--photos", action="store_true", help="also print every photo's row")
    args = parser.parse_args()
    edge = args.long_edge

    names, full = load_pairs(args.pairs)
    pairs = [(shrink(b, edge), shrink(a, edge)) for b, a in full]
    pair_root = args.pairs.parent
    others = [
        Item(s, p.name, read(p, edge), read(pair_root / s / "after" / p.name, edge))
        for s in OTHER_PAIRS
        if (pair_root / s / "before").is_dir()
        for p in sorted((pair_root / s / "before").iterdir())
    ]
    unpaired = [
        Item(s, p.name, read(p, edge), None)
        for s in UNPAIRED
        if (SHARED_DATA / s).is_dir()
        for p in sorted((SHARED_DATA / s).iterdir())
        if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    ]
    cfg = TrainConfig(steps=args.steps, long_edge=edge, refit=args.refit)
    rows: list[dict[str, Any]] = []
    fold_info = []
    for k, (train_idx, test_idx) in enumerate(folds(len(pairs))):
        wall, cpu = time.perf_counter(), time.process_time()
        style = train([pairs[i] for i in train_idx], device="cpu", config=cfg)
        fold_info.append(
            {
                "part": "expert",
                "fold": k,
                "train_wall_s": round(time.perf_counter() - wall, 1),
                "train_cpu_s": round(time.process_time() - cpu, 1),
                "adaptive": style.metadata["adaptive"],
            }
        )
        items = items_for([(names[i], *pairs[i]) for i in test_idx], others, unpaired)
        rows += [score(style, item, k, "expert") for item in items]

    rows += look_part(pair_root, unpaired, cfg, fold_info)

    report: dict[str, Any] = {
        "dataset": args.pairs.name,
        "protocol": "expert: 3 folds of fivek_deeplpf, train on 8; look: 3 folds of the 24 FiveK befores, train on 16",
        "recipe": {"steps": args.steps, "long_edge": edge, "refit": args.refit},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "folds": fold_info,
        **summarise(rows, args.threshold),
    }
    if args.photos:
        report["photos"] = rows
    emit("style_confidence", report)


def look_part(pair_root: Path, unpaired: list[Item], cfg: TrainConfig, fold_info: list[Any]) -> list[dict[str, Any]]:
    """The written look (see the module docstring): train on FiveK befores, score everywhere."""
    lut = render_lut(preset.parse(PRESET, "soft-film.xmp"))

    def look(image: Array) -> Array:
        return tweak(lut3d.apply_lut_image_pillow(lut, image))

    files = sorted(pair_root.glob("*/before/*"))
    befores = [read(f, cfg.long_edge) for f in files]
    others = [Item(u.group, u.name, u.before, look(u.before)) for u in unpaired]
    rows = []
    for k, (train_idx, test_idx) in enumerate(folds(len(befores))):
        wall = time.perf_counter()
        style = train([(befores[i], look(befores[i])) for i in train_idx], device="cpu", config=cfg)
        fold_info.append({"part": "look", "fold": k, "train_wall_s": round(time.perf_counter() - wall, 1)})
        items = [Item("heldout", files[i].name, befores[i], look(befores[i])) for i in test_idx] + others
        rows += [score(style, item, k, "look") for item in items]
    return rows


def score(style: LutStyle, item: Item, fold: int, part: str) -> dict[str, Any]:
    edit = style.edits_for([item.before])[0]
    c = edit.confidence
    assert c is not None  # trained here: the model has its coverage record
    out = render(edit.lut, item.before, "cpu")
    return {
        "fold": fold,
        "group": f"{part}:{item.group}",
        "name": item.name,
        "psnr_db": None if item.after is None else round(psnr(out, item.after), 2),
        "confidence": round(c.value, 4),
        "signals": c.to_json(),
    }


if __name__ == "__main__":
    main()
