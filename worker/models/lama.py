"""LaMa: large-mask inpainting with Fourier convolutions, from its TorchScript export.

Paper: Suvorov et al., "Resolution-robust Large Mask Inpainting with Fourier Convolutions",
WACV 2022 (https://github.com/advimman/lama). Licence: Apache-2.0 (code and the ``big-lama``
weights).

Architecture: an encoder–decoder whose residual blocks are *fast Fourier convolutions*
(half the channels go through an FFT, a 1×1 convolution in the frequency domain and back),
which gives every layer an image-wide receptive field — why it fills a wire across the sky
with the sky, not with a smear of the nearby roofline. ``big-lama`` has 18 such blocks
(~51 M parameters), trained at 256² on Places with large irregular masks; it holds up at
far higher resolutions than that, which is what the 1024 px crops rely on.

Checkpoint: the TorchScript export ``big-lama.pt`` (traced model; no architecture code is
needed here). Its ``forward(image, mask)`` takes ``image`` ``[1, 3, H, W]`` float in [0, 1]
(RGB), ``mask`` ``[1, 1, H, W]`` float in {0, 1} (1 = fill), H and W multiples of 8, and
returns ``[1, 3, H, W]`` in [0, 1]. The file's name and hash live in
``worker.models.registry``; the loader below only reads a file it is given.

Use: :func:`load_lama` once at start (``worker.models.bundle.load``); crops come from
:mod:`worker.cleanup.inpaint`, never the whole photo.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from worker.errors import ModelFileError
from worker.frame import Image

FILENAME = "big-lama.pt"


class LamaInpainter:
    """Implements :class:`worker.models.protocols.Inpainter` with a TorchScript (or any torch) module.

    Calls run with TorchScript's optimising executor **off** (``jit_optimize=False``). With it
    on, the first calls at each new crop size profile and recompile the graph — measured on an
    H200 with the big-lama architecture: 0.9 s, then 5.3–5.7 s, before settling at 32.5 ms
    per crop — and cleanup crops come in many sizes, so a worker would stall for seconds again
    and again. Off, a 1024² crop takes 42 ms from its first call (docs/benchmarks.md).
    """

    name = "lama"

    def __init__(self, module: Any, device: str = "cpu", jit_optimize: bool = False) -> None:
        self.module = module
        self.device = torch.device(device)
        self.jit_optimize = jit_optimize
        # No process-wide precision switch here: LaMa runs in fp32, its convolutions in cuDNN's TF32
        # (torch's default), and it has no matmul that `torch.backends.cuda.matmul.allow_tf32` would
        # change — which other models (CodeFormer, style training) would then inherit.

    def inpaint(self, image: Image, mask: npt.NDArray[np.uint8]) -> Image:
        h, w = image.shape[:2]
        if h % 8 or w % 8:
            raise ValueError(f"LaMa needs sides that are multiples of 8, got {w}x{h}")
        with torch.inference_mode():
            img = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
            img = img.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            m = torch.from_numpy((mask > 0).astype(np.float32)).to(self.device)[None, None]
            with torch.jit.optimized_execution(self.jit_optimize):
                out = self.module(img, m)
            if isinstance(out, (tuple, list)):
                out = out[0]
            if tuple(out.shape) != (1, 3, h, w):
                raise ModelFileError(
                    f"{FILENAME} returned shape {tuple(out.shape)} for a {w}x{h} crop; "
                    "it is not LaMa's TorchScript export — replace the file"
                )
            out = out.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            return np.ascontiguousarray(out[0].permute(1, 2, 0).cpu().numpy())


def load_lama(path: Path, device: str = "cpu") -> LamaInpainter:
    """Load ``big-lama.pt`` (TorchScript) onto ``device``; a file that is not one raises ModelFileError."""
    if not path.is_file():
        raise ModelFileError(f"LaMa weights not found at {path}; put {FILENAME} in WORKER_MODELS_DIR")
    try:
        with warnings.catch_warnings():
            # torch ≥ 2.10 marks TorchScript deprecated (a DeprecationWarning in 2.11, a FutureWarning
            # in 2.14); big-lama.pt exists only in that format.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated")
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors for foreign files
        raise ModelFileError(
            f"{path} is not a TorchScript file ({type(exc).__name__}); download {FILENAME} again"
        ) from exc
    module.eval()
    return LamaInpainter(module, device)
