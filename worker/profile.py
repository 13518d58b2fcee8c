"""Edit settings: what the photographer chose for a job, resolved once per job.

Sources, later ones winning: the defaults below, the style profile's
``style_profiles.settings`` (the app's ``StyleSettings``), then the job's
``processing_jobs.settings_override``. Unknown keys are ignored; a value of the
wrong kind falls back to its default and is listed in :attr:`EditSettings.ignored`
so the report can say so instead of the job failing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

RetouchIntensity = Literal["off", "light", "medium", "heavy"]
CleanupLevel = Literal["off", "conservative", "moderate", "aggressive"]
WatermarkPosition = Literal["bottom-right", "bottom-left", "top-right", "top-left", "center"]

_ASPECT = re.compile(r"^\s*(\d{1,3})\s*[:x/]\s*(\d{1,3})\s*$")


@dataclass(frozen=True)
class EditSettings:
    """Per-job edit choices. Field names match the app's ``StyleSettings`` where it has them."""

    retouch_intensity: RetouchIntensity = "light"  # subtle by default
    skin_smoothing: int | None = None  # 0–100; None: from retouch_intensity
    codeformer_fidelity: float = 0.7  # CodeFormer w: 0 = strongest restoration, 1 = most faithful
    cleanup_level: CleanupLevel = "conservative"
    power_line_removal: bool = True
    exit_sign_removal: bool = True
    horizon_correction: bool = True
    auto_crop: bool = False
    crop_aspect: str | None = None  # "4:5", "2:3", "1:1"
    keep_gps: bool = False
    jpeg_quality: int = 92
    web_long_edge: int = 2048
    thumb_long_edge: int = 400
    watermark: bool = False
    watermark_key: str | None = None  # storage key of the photographer's logo (PNG with alpha)
    watermark_opacity: float = 0.5
    watermark_position: WatermarkPosition = "bottom-right"
    # A styled photo whose edit_confidence is below this goes to review (needs_review); 0: never.
    style_review_threshold: float = 0.5
    ignored: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def resolve(cls, *layers: Mapping[str, Any] | None) -> EditSettings:
        """Merge ``layers`` (profile settings, then the job's override) over the defaults."""
        merged: dict[str, Any] = {}
        for layer in layers:
            if layer:
                merged.update(layer)
        values: dict[str, Any] = {}
        ignored: list[str] = []
        known = {f.name: f for f in fields(cls) if f.name != "ignored"}
        for name, raw in merged.items():
            if name not in known:
                continue
            try:
                values[name] = _coerce(name, raw, getattr(cls, name, None))
            except (TypeError, ValueError):
                ignored.append(f"{name}={raw!r}")
        return cls(**values, ignored=tuple(ignored))

    @property
    def smoothing_strength(self) -> float:
        """Skin smoothing strength in 0–1, from ``skin_smoothing`` or the intensity preset."""
        if self.skin_smoothing is not None:
            return max(0.0, min(1.0, self.skin_smoothing / 100.0))
        return {"off": 0.0, "light": 0.25, "medium": 0.5, "heavy": 0.8}[self.retouch_intensity]

    @property
    def crop_ratio(self) -> float | None:
        """``crop_aspect`` as width/height, or None."""
        if not self.crop_aspect:
            return None
        m = _ASPECT.match(self.crop_aspect)
        assert m is not None  # checked in _coerce
        return int(m.group(1)) / int(m.group(2))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "ignored"}
        if self.ignored:
            out["ignored"] = list(self.ignored)
        return out


_CHOICES: dict[str, tuple[str, ...]] = {
    "retouch_intensity": ("off", "light", "medium", "heavy"),
    "cleanup_level": ("off", "conservative", "moderate", "aggressive"),
    "watermark_position": ("bottom-right", "bottom-left", "top-right", "top-left", "center"),
}
_RANGES: dict[str, tuple[float, float]] = {
    "skin_smoothing": (0, 100),
    "codeformer_fidelity": (0.0, 1.0),
    "jpeg_quality": (50, 100),
    "web_long_edge": (256, 8192),
    "thumb_long_edge": (64, 2048),
    "watermark_opacity": (0.0, 1.0),
    "style_review_threshold": (0.0, 1.0),
}


def _coerce(name: str, raw: Any, default: Any) -> Any:
    if name in _CHOICES:
        if not isinstance(raw, str) or raw.lower() not in _CHOICES[name]:
            raise ValueError(name)
        return raw.lower()
    if name == "crop_aspect":
        return _aspect(name, raw)
    if name == "watermark_key":
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise TypeError(name)
        return raw
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise TypeError(name)
        return raw
    if name in _RANGES:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise TypeError(name)
        lo, hi = _RANGES[name]
        if not lo <= raw <= hi:
            raise ValueError(name)
        return float(raw) if isinstance(default, float) else int(raw)
    raise TypeError(name)


def _aspect(name: str, raw: Any) -> str | None:
    """A crop aspect as ``"W:H"`` (``"3x2"``, ``" 3 / 2 "`` → ``"3:2"``); None, ``""`` or ``"original"``: no crop."""
    if raw is None or raw in {"", "original"}:
        return None
    if not isinstance(raw, str) or not _ASPECT.match(raw):
        raise ValueError(name)
    m = _ASPECT.match(raw)
    assert m is not None
    if int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise ValueError(name)
    return f"{int(m.group(1))}:{int(m.group(2))}"
