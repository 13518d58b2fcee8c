"""A Lightroom preset as a style's starting point: 3 pairs with the preset against 8 without, printed as JSON.

    python -m benchmarks.style_preset [--long-edge 400] [--steps 200] [--folds 2] [--skip NAME,…]

The look: :data:`PRESET` (an ``.xmp`` written here by the published ``crs:``
schema), rendered by ``worker/style/develop.py``, then :func:`tweak` (the
photographer's own touch on top of it: a little brighter, warmer and punchier)
— the "after" of every photo. The photos: every ``before`` under
``../shared/data/pairs/*/`` (read from there, never copied), sorted by path,
shrunk to ``--long-edge``.

Fold k trains on photos 8k…8k+7 and scores every other photo (held out):

* ``identity`` — the photo as it came;
* ``preset_alone`` — the preset's LUT, no training (what a profile with only a preset applies);
* ``pairs8`` — the default recipe on the 8 pairs;
* ``pairs3`` — the default recipe on the first 3 of them;
* ``pairs3_preset`` — the same 3 pairs, training started from the preset (``train(start=…)``);
* ``pairs8_preset`` — the 8 pairs, started from the preset.

Target: ``pairs3_preset`` ≥ ``pairs8``. About 8 minutes on two busy CPU cores with the defaults
(``--skip pairs8_preset,pairs3`` for the two rows the target compares, and the preset alone).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import SHARED_DATA, emit
from worker.imaging.colour import linear_to_srgb, srgb_to_linear
from worker.imaging.resize import shrink
from worker.models import lut3d
from worker.style import preset
from worker.style.develop import render_lut, to_style
from worker.style.metrics import delta_e2000, psnr
from worker.style.train import TrainConfig, train

PRESET = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
   crs:PresetType="Normal" crs:Version="15.0" crs:ProcessVersion="11.0"
   crs:IncrementalTemperature="+6" crs:Exposure2012="+0.35" crs:Contrast2012="-10"
   crs:Highlights2012="-35" crs:Shadows2012="+25" crs:Whites2012="+10" crs:Blacks2012="-8"
   crs:Vibrance="+20" crs:Saturation="-5" crs:Clarity2012="+10"
   crs:SaturationAdjustmentOrange="-10" crs:LuminanceAdjustmentOrange="+8"
   crs:HueAdjustmentGreen="-20" crs:SaturationAdjustmentGreen="-35" crs:SaturationAdjustmentAqua="-20"
   crs:SaturationAdjustmentBlue="-20" crs:LuminanceAdjustmentBlue="-10"
   crs:SplitToningShadowHue="210" crs:SplitToningShadowSaturation="12"
   crs:SplitToningHighlightHue="45" crs:SplitToningHighlightSaturation="15" crs:SplitToningBalance="+10"
   crs:HasSettings="True">
   <crs:Name><rdf:Alt><rdf:li xml:lang="x-default">Soft film</rdf:li></rdf:Alt></crs:Name>
   <crs:ToneCurvePV2012><rdf:Seq>
    <rdf:li>0, 18</rdf:li><rdf:li>70, 68</rdf:li><rdf:li>190, 195</rdf:li><rdf:li>255, 250</rdf:li>
   </rdf:Seq></crs:ToneCurvePV2012>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def tweak(image: np.ndarray) -> np.ndarray:
    """The photographer's touch on top of the preset: +0.2 EV, warmer (red ×1.04, blue ×0.94), 6 % more contrast."""
    lin = srgb_to_linear(image / 255.0) * 2.0**0.2 * np.array([1.04, 1.0, 0.94])
    enc = linear_to_srgb(np.clip(lin, 0.0, 1.0))
    enc = 0.5 + (enc - 0.5) * 1.06
    return np.asarray(np.clip(enc * 255.0 + 0.5, 0, 255), dtype=np.uint8)


def summary(
    scores: list[tuple[float, float]], seconds: list[float] | None = None, folds: list[float] | None = None
) -> dict[str, Any]:
    arr = np.asarray(scores)
    out: dict[str, Any] = {
        "psnr_db": round(float(arr[:, 0].mean()), 2),
        "delta_e2000": round(float(arr[:, 1].mean()), 2),
    }
    if folds:
        out["per_fold_psnr_db"] = folds
    if seconds:
        out["train_s"] = round(float(np.mean(seconds)), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long-edge", type=int, default=400)
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per fit (the recipe's: 600)")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated methods not to train (pairs3, pairs8_preset, …)")
    args = parser.parse_args()

    files = sorted(SHARED_DATA.glob("pairs/*/before/*"))
    befores = [shrink(np.asarray(Image.open(f).convert("RGB")), args.long_edge) for f in files]
    settings = preset.parse(PRESET, "soft-film.xmp")
    lut = render_lut(settings)
    afters = [tweak(lut3d.apply_lut_image_pillow(lut, b)) for b in befores]
    cfg = TrainConfig(steps=args.steps, long_edge=args.long_edge)
    skip = set(filter(None, args.skip.split(",")))

    methods = ["identity", "preset_alone", "pairs8", "pairs3", "pairs3_preset", "pairs8_preset"]
    scores: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    per_fold: dict[str, list[float]] = {m: [] for m in methods}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for fold in range(args.folds):
        train_idx = list(range(8 * fold, 8 * fold + 8))
        test_idx = [i for i in range(len(befores)) if i not in train_idx]
        pairs = [(befores[i], afters[i]) for i in train_idx]
        styles: dict[str, Any] = {"preset_alone": to_style(settings)}
        for name, subset, start in (
            ("pairs8", pairs, None),
            ("pairs3", pairs[:3], None),
            ("pairs3_preset", pairs[:3], lut),
            ("pairs8_preset", pairs, lut),
        ):
            if name in skip:
                continue
            started = time.perf_counter()
            styles[name] = train(subset, device="cpu", config=replace(cfg, seed=fold), start=start)
            seconds[name].append(time.perf_counter() - started)
        fold_scores: dict[str, list[float]] = {}
        for i in test_idx:
            before, after = befores[i], afters[i]
            scores["identity"].append((psnr(before, after), delta_e2000(before, after)))
            for name, style in styles.items():
                out = style.apply(before, "cpu")
                scores[name].append((psnr(out, after), delta_e2000(out, after)))
                fold_scores.setdefault(name, []).append(scores[name][-1][0])
        for name, values in fold_scores.items():
            per_fold[name].append(round(float(np.mean(values)), 2))

    report: dict[str, Any] = {
        "protocol": f"{args.folds} folds of 8 training photos, the others held out; after = tweak(preset(before))",
        "photos": len(befores),
        "long_edge": args.long_edge,
        "steps": args.steps,
        "preset": settings.summary(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "methods": {m: summary(scores[m], seconds[m], per_fold[m]) for m in methods if scores[m]},
    }
    if scores["pairs3_preset"] and scores["pairs8"]:
        report["target_met"] = report["methods"]["pairs3_preset"]["psnr_db"] >= report["methods"]["pairs8"]["psnr_db"]
    emit("style_preset", report)


if __name__ == "__main__":
    main()
