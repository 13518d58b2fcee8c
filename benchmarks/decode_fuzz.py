"""Fuzzing the decoder at length: thousands of mutated JPEG, PNG, TIFF, GIF, WebP, BMP, HEIC and DNG
files (``tests/fuzz_decode.py``; the test suite runs a few hundred), each seed in a child process.

Every case must end as a frame or a per-photo ``DecodeError`` with a one-line reason, within the
case time limit, with the child's peak memory within the budget the pixel limit allows. Prints JSON:
per seed, the outcomes, the problems found (with the case to replay), the slowest case and the peak
memory the cases added.

    python -m benchmarks.decode_fuzz [--seeds 1 2 3] [--cases 3000]
    python -m tests.fuzz_decode --seed S --only I      # replay one case
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks.common import machine
from tests import fuzz_decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--cases", type=int, default=3000, help="cases per seed")
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        result = fuzz_decode.run_child(seed, args.cases, timeout_s=max(300.0, args.cases * 0.2))
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        runs.append(result)
    crashed = [r for r in runs if "crashed" in r]
    print(
        json.dumps(
            {
                "benchmark": "decode_fuzz",
                "machine": machine(),
                "max_pixels": fuzz_decode.MAX_PIXELS,
                "case_limit_s": fuzz_decode.CASE_LIMIT_S,
                "cases": sum(r.get("cases", 0) for r in runs),
                "decoded": sum(r.get("decoded", 0) for r in runs),
                "refused": sum(r.get("refused", 0) for r in runs),
                "problems": sum(len(r.get("problems", [])) for r in runs),
                "crashed": len(crashed),
                "slowest_case_s": max((r.get("slowest_case_s", 0.0) for r in runs), default=0.0),
                "peak_rss_growth_mb": max((r.get("peak_rss_growth_mb", 0.0) for r in runs), default=0.0),
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
