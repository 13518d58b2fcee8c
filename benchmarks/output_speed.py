"""Output of one 24 MP photo: full-resolution JPEG (q92, 4:4:4), web 2048 and thumb 400
(target: ≤ 500 ms for the three on two cores), plus the parts; and the watermark on a web
image per photo, with the job's prepared logo (scaled once per size) and with a raw one.

    python -m benchmarks.output_speed
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from benchmarks.analysis_photos import jpeg_bytes, photo_24mp, timed
from benchmarks.common import machine
from worker.imaging.decode import decode
from worker.imaging.resize import downscale
from worker.phases.output import Watermark, apply_watermark, encode_all, encode_jpeg
from worker.profile import EditSettings


def main() -> None:
    data = jpeg_bytes(photo_24mp(), quality=92)
    frame = decode(data, photo_id="b", filename="b.jpg", max_pixels=250_000_000)
    edit = EditSettings()
    outputs, _ = encode_all(frame, edit)
    web = downscale(frame.image, 2048)
    watermark = {}
    for lw, lh in ((1200, 400), (5000, 3000)):  # a typical logo, and a big one (MAX_LOGO_PIXELS is 16 MP)
        logo = np.random.default_rng(0).integers(0, 256, (lh, lw, 4), dtype=np.uint8)
        mark = Watermark(logo, 2048)  # as the job prepares it, for 2048 px web images
        sizes = iter(range(300, 400))  # straightening and crops make new web sizes: each scaled once

        def new_size(m: Watermark = mark, sizes: Iterator[int] = sizes) -> None:
            m.scaled(next(sizes), 80)

        watermark[f"{lw}x{lh}"] = {
            "prepare_once_per_job": timed(lambda a=logo: Watermark(a, 2048), repeat=3),
            "a_new_size_first_time": timed(new_size),
            "prepared_per_photo": timed(lambda m=mark: apply_watermark(web, m, "bottom-right", 0.5)),
            "raw_logo_per_photo": timed(
                lambda a=logo: apply_watermark(web, Watermark(a), "bottom-right", 0.5), repeat=3
            ),
        }
    print(
        json.dumps(
            {
                "benchmark": "output_24mp",
                "size": [frame.width, frame.height],
                "bytes": {k: len(v.data) for k, v in outputs.items()},
                "three_encodes": timed(lambda: encode_all(frame, edit)),
                "full_resolution_encode": timed(lambda: encode_jpeg(frame.image, quality=92)),
                "downscale_to_2048": timed(lambda: downscale(frame.image, 2048)),
                "web_encode": timed(lambda: encode_jpeg(web, quality=85, progressive=True)),
                "watermark_on_web": watermark,
                "target_ms": 500,
                "machine": machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
