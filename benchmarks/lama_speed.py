"""LaMa speed per 1024² crop, through the worker's own LaMa path; prints JSON.

    python -m benchmarks.lama_speed [--device cuda] [--iters 20] [--sizes 512,1024]
                                    [--modes worker,jit-optimized,eager,eager-fp16] [--profile]

``big-lama.pt`` cannot be downloaded on the development box, and a benchmark must not
depend on it, so this times a **stand-in with big-lama's architecture and random
weights**: the generator of Suvorov et al. (WACV 2022) as configured in the official
``big-lama`` recipe — ``ffc_resnet``, 4 → 64 channels, three stride-2 downsamplings to
512 channels, 18 fast-Fourier-convolution residual blocks with 75 % of the channels global,
three transposed-convolution upsamplings, sigmoid out — about 51 M parameters, wrapped
like the TorchScript export (``forward(image, mask)``: mask the image, concatenate the
mask, blend the prediction back outside the mask) and traced to TorchScript. The cost
of a forward pass does not depend on the weight values. It is then loaded with
:func:`worker.models.lama.load_lama` and timed through ``LamaInpainter.inpaint`` — uint8
crop and mask in, uint8 crop out, host↔device copies included — the call phase 3 makes.
Each size reports its first calls (TorchScript's optimising executor recompiles there) and
the median of the rest; ``--modes`` adds the other ways to run it, ``--profile`` a
``torch.profiler`` table per mode.

Target (issue 4): ≤ 60 ms per 1024² crop on an H100-class GPU. On a CPU one crop takes
tens of seconds; run it there only with ``--sizes 256 --iters 1`` to check it works.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.common import emit
from worker.models.lama import LamaInpainter, load_lama


class FourierUnit(nn.Module):
    """1×1 convolution over the real and imaginary parts of the image's 2-D FFT."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels * 2, channels * 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels * 2)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        f = torch.fft.rfftn(x.float(), dim=(-2, -1), norm="ortho")
        f = torch.stack((f.real, f.imag), dim=2).reshape(b, c * 2, h, w // 2 + 1)
        f = torch.relu(self.bn(self.conv(f))).reshape(b, c, 2, h, w // 2 + 1)
        return torch.fft.irfftn(torch.complex(f[:, :, 0], f[:, :, 1]), s=(h, w), dim=(-2, -1), norm="ortho")


class SpectralTransform(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(cin, cout // 2, 1, bias=False), nn.BatchNorm2d(cout // 2), nn.ReLU())
        self.fu = FourierUnit(cout // 2)
        self.conv2 = nn.Conv2d(cout // 2, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(x + self.fu(x))


class FFC(nn.Module):
    """A fast Fourier convolution: local (3×3) and global (spectral) branches that exchange features."""

    def __init__(self, cin: int, cout: int, ratio: float) -> None:
        super().__init__()
        self.gin, self.gout = int(cin * ratio), int(cout * ratio)
        lin, lout = cin - self.gin, cout - self.gout
        self.l2l = nn.Conv2d(lin, lout, 3, padding=1, padding_mode="reflect", bias=False)
        self.l2g = nn.Conv2d(lin, self.gout, 3, padding=1, padding_mode="reflect", bias=False)
        self.g2l = nn.Conv2d(self.gin, lout, 3, padding=1, padding_mode="reflect", bias=False)
        self.g2g = SpectralTransform(self.gin, self.gout)
        self.bn_l, self.bn_g = nn.BatchNorm2d(lout), nn.BatchNorm2d(self.gout)

    def forward(self, xl: Tensor, xg: Tensor) -> tuple[Tensor, Tensor]:
        yl = self.l2l(xl) + self.g2l(xg)
        yg = self.l2g(xl) + self.g2g(xg)
        return torch.relu(self.bn_l(yl)), torch.relu(self.bn_g(yg))


class FFCResBlock(nn.Module):
    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        self.conv1, self.conv2 = FFC(dim, dim, ratio), FFC(dim, dim, ratio)

    def forward(self, xl: Tensor, xg: Tensor) -> tuple[Tensor, Tensor]:
        yl, yg = self.conv2(*self.conv1(xl, xg))
        return xl + yl, xg + yg


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class BigLamaStandIn(nn.Module):
    """big-lama's generator (ngf 64, 3 downsamplings, 18 FFC blocks at ratio 0.75) behind the export's API."""

    def __init__(self, ngf: int = 64, blocks: int = 18, ratio: float = 0.75) -> None:
        super().__init__()
        top = ngf * 8
        self.down = nn.Sequential(
            nn.ReflectionPad2d(3),
            *_conv_bn_relu(4, ngf, 7),
            *_conv_bn_relu(ngf, ngf * 2, 3, 2, 1),
            *_conv_bn_relu(ngf * 2, ngf * 4, 3, 2, 1),
        )
        self.split = int(top * ratio)
        self.to_local = nn.Sequential(*_conv_bn_relu(ngf * 4, top - self.split, 3, 2, 1))
        self.to_global = nn.Sequential(*_conv_bn_relu(ngf * 4, self.split, 3, 2, 1))
        self.blocks = nn.ModuleList(FFCResBlock(top, ratio) for _ in range(blocks))
        up: list[nn.Module] = []
        for c in (top, top // 2, top // 4):
            up += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1), nn.BatchNorm2d(c // 2), nn.ReLU()]
        self.up = nn.Sequential(*up, nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Sigmoid())

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        x = self.down(torch.cat((image * (1 - mask), mask), dim=1))
        xl, xg = self.to_local(x), self.to_global(x)
        for block in self.blocks:
            xl, xg = block(xl, xg)
        out = self.up(torch.cat((xl, xg), dim=1))
        return mask * out + (1 - mask) * image


def stand_in_file(folder: Path, device: str) -> Path:
    """Trace the stand-in to TorchScript in ``folder`` (``big-lama.pt``), as the official export is shipped."""
    torch.manual_seed(0)
    model = BigLamaStandIn().eval().to(device)
    example = (torch.rand(1, 3, 256, 256, device=device), torch.zeros(1, 1, 256, 256, device=device))
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.10 marks TorchScript deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
    path = folder / "big-lama.pt"
    traced.save(str(path))
    return path


class _Half(nn.Module):
    """Run a module under fp16 autocast (the FFTs stay fp32: FourierUnit casts up)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        with torch.autocast("cuda", dtype=torch.float16):
            out: Tensor = self.module(image, mask)
        return out.float()


MODES = ("worker", "jit-optimized", "eager", "eager-fp16")


def inpainter_for(mode: str, folder: Path, device: str) -> LamaInpainter:
    """The inpainter a mode times.

    ``worker``: the TorchScript file through ``load_lama``, as phase 3 runs it (TorchScript's
    optimising executor off); ``jit-optimized``: the same with that executor on (fast once warm,
    but it recompiles for seconds at every new crop size); ``eager``/``eager-fp16``: the
    architecture as a plain module, for comparison (the weights only ship as TorchScript).
    """
    if mode in ("worker", "jit-optimized"):
        inpainter = load_lama(stand_in_file(folder, device), device)
        inpainter.jit_optimize = mode == "jit-optimized"
        return inpainter
    torch.manual_seed(0)
    module: nn.Module = BigLamaStandIn().eval().to(device)
    if mode == "eager-fp16":
        module = _Half(module)
    return LamaInpainter(module, device)


def time_mode(mode: str, device: str, sizes: list[int], iters: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inpainter = inpainter_for(mode, Path(tmp), device)
        out["parameters_m"] = round(sum(p.numel() for p in inpainter.module.parameters()) / 1e6, 1)
        for size in sizes:
            crop = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            mask = np.zeros((size, size), np.uint8)
            mask[size // 2 - 6 : size // 2 + 6] = 1  # a wire across the crop
            calls = []
            for _ in range(iters + 1):  # the first call warms up (cuDNN/cuFFT plans, allocator, JIT passes)
                t0 = time.perf_counter()
                inpainter.inpaint(crop, mask)  # returns a host array: the copy back synchronises
                calls.append((time.perf_counter() - t0) * 1e3)
            out[f"crop_{size}"] = {
                "first_calls_ms": [round(c, 1) for c in calls[:3]],
                "median_ms": round(statistics.median(calls[1:]), 2),
            }
    return out


def profile(mode: str, device: str, size: int) -> None:
    """Print where three calls spend their time (torch.profiler, sorted by device time) to stderr."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    crop = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 2 - 6 : size // 2 + 6] = 1
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with tempfile.TemporaryDirectory() as tmp:
        inpainter = inpainter_for(mode, Path(tmp), device)
        inpainter.inpaint(crop, mask)
        with torch_profile(activities=activities) as prof:
            for _ in range(3):
                inpainter.inpaint(crop, mask)
    key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    print(f"== profile: {mode}, {size}px, 3 calls", file=sys.stderr)
    print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=60), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--modes", default="worker", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--profile", action="store_true", help="torch.profiler table of 3 calls per mode (stderr)")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    sizes = [int(s) for s in args.sizes.split(",")]
    report: dict[str, Any] = {
        "device": args.device,
        "model": "stand-in: big-lama architecture, random weights",
        "precision": "fp32 (cuDNN TF32 convolutions) unless the mode says fp16" if cuda else "fp32",
        "iters": args.iters,
    }
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if mode == "eager-fp16" and not cuda:
            report[mode] = "skipped: fp16 autocast is for CUDA"
            continue
        report[mode] = time_mode(mode, args.device, sizes, args.iters)
        if args.profile:
            profile(mode, args.device, sizes[-1])
    report["target_ms_1024"] = 60
    emit("lama_speed", report)  # with the machine: GPU name, torch


if __name__ == "__main__":
    main()
