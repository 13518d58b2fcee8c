"""A photographer's Lightroom preset (``.xmp`` or ``.lrtemplate``), read safely into typed settings.

The two formats carry the same develop settings under the same names (Adobe's
``crs:`` Camera Raw Settings schema)::

    .xmp          <x:xmpmeta><rdf:RDF><rdf:Description crs:Exposure2012="+0.50" ...>
                    <crs:ToneCurvePV2012><rdf:Seq><rdf:li>0, 0</rdf:li>...</rdf:Seq></crs:ToneCurvePV2012>
    .lrtemplate   s = { title = "...", value = { settings = { Exposure2012 = 0.5,
                                                              ToneCurvePV2012 = { 0, 0, 255, 255 } } } }

:func:`parse` (bytes, file name → :class:`PresetSettings`) reads either. What it
reads is the top-level settings only: a value nested in a struct (a local
correction's own ``crs:Exposure2012``, an Adobe profile's ``crs:Look``) is not a
global setting and is never taken for one.

Safety: an ``.xmp`` is parsed by expat with no DOCTYPE allowed at all (so no
entity can be declared, expanded or fetched: "billion laughs" and external
entities are refused), and an ``.lrtemplate`` by a small reader of Lua table
constructors that never runs anything. Both have size and nesting limits. Any
file that is not a preset raises :class:`~worker.errors.JobInputError` with a
one-line message.

Every key ends up in exactly one place of the result: ``applied`` (it moves
pixels, ``worker/style/develop.py``), ``ignored`` (with the reason: a local or
spatial edit a colour LUT cannot do, lens/geometry, camera calibration, automatic
or Process Version 2010 settings), or ``unknown``; descriptive keys (name,
UUID, version, ``Supports…``) are read or skipped silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers import expat

from worker.errors import JobInputError

MAX_BYTES = 4 * 1024 * 1024  # presets are a few kB; an XMP carrying a profile's look table a few hundred kB
MAX_DEPTH = 32
MAX_CURVE_POINTS = 256
HUES = ("Red", "Orange", "Yellow", "Green", "Aqua", "Blue", "Purple", "Magenta")

CRS = "http://ns.adobe.com/camera-raw-settings/1.0/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

Curve = tuple[tuple[float, float], ...]  # (input, output) points on Lightroom's 0–255 scale
LINEAR: Curve = ((0.0, 0.0), (255.0, 255.0))
_ZERO8 = (0.0,) * 8

LOCAL = "not a global colour operation (a 3D LUT cannot do local or spatial edits)"
GEOMETRY = "lens or geometry correction, not a colour operation"
CALIBRATION = (
    "camera calibration and Adobe profiles act on the raw file's own colours, which a rendered photo no longer has"
)
AUTOMATIC = "an automatic setting depends on each photo, not on the preset"
LEGACY = "a Process Version 2010 setting; re-save the preset in Lightroom 4 or later to use it"
AUTO_WB = "automatic white balance depends on each photo, not on the preset"


@dataclass(frozen=True)
class PresetSettings:
    """The global develop settings of a preset, with Lightroom's defaults (a default changes nothing).

    Units are Lightroom's own: sliders −100…+100 unless noted, hues in degrees,
    curves as 0–255 points.
    """

    name: str = ""
    # white balance
    white_balance: str = ""  # "As Shot", "Custom", "Auto", "Daylight", … ("" when absent)
    temperature: float | None = None  # kelvin: a raw preset's white balance (2000–50000)
    tint: float | None = None  # −150…+150, with temperature
    incremental_temperature: float = 0.0  # a rendered (JPEG) photo's white balance sliders
    incremental_tint: float = 0.0
    # basic tone (Process Version 2012+)
    exposure: float = 0.0  # stops, −5…+5
    contrast: float = 0.0
    highlights: float = 0.0
    shadows: float = 0.0
    whites: float = 0.0
    blacks: float = 0.0
    # presence (the global parts)
    vibrance: float = 0.0
    saturation: float = 0.0
    # tone curve: parametric regions, then the point curves
    parametric_shadows: float = 0.0
    parametric_darks: float = 0.0
    parametric_lights: float = 0.0
    parametric_highlights: float = 0.0
    parametric_shadow_split: float = 25.0  # region boundaries, 0–100
    parametric_midtone_split: float = 50.0
    parametric_highlight_split: float = 75.0
    tone_curve: Curve = LINEAR
    tone_curve_red: Curve = LINEAR
    tone_curve_green: Curve = LINEAR
    tone_curve_blue: Curve = LINEAR
    # HSL, per hue in HUES order
    hue: tuple[float, ...] = _ZERO8
    hsl_saturation: tuple[float, ...] = _ZERO8
    hsl_luminance: tuple[float, ...] = _ZERO8
    # black & white
    grayscale: bool = False
    gray_mixer: tuple[float, ...] = _ZERO8
    # split toning / colour grading (hues 0–360, saturations 0–100)
    shadow_hue: float = 0.0
    shadow_saturation: float = 0.0
    highlight_hue: float = 0.0
    highlight_saturation: float = 0.0
    balance: float = 0.0
    midtone_hue: float = 0.0
    midtone_saturation: float = 0.0
    global_hue: float = 0.0
    global_saturation: float = 0.0
    shadow_luminance: float = 0.0
    midtone_luminance: float = 0.0
    highlight_luminance: float = 0.0
    global_luminance: float = 0.0
    blending: float = 50.0  # 0–100: how far the three tonal ranges overlap
    # what was read
    applied: tuple[str, ...] = ()  # the keys that set the values above
    ignored: tuple[tuple[str, str], ...] = ()  # (key, why)
    unknown: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # values out of range that were clamped, and the like

    def summary(self) -> dict[str, Any]:
        """What was read, for logs, the CLI and a model's metadata (plain JSON types)."""
        return {
            "name": self.name,
            "applied": list(self.applied),
            "ignored": {k: why for k, why in self.ignored},
            "unknown": list(self.unknown),
            "notes": list(self.notes),
        }


# -- the keys ------------------------------------------------------------------------------------
# key → (field, lowest, highest): numbers clamped to Lightroom's slider ranges.
_NUMBERS: dict[str, tuple[str, float, float]] = {
    "Temperature": ("temperature", 2000.0, 50000.0),
    "Tint": ("tint", -150.0, 150.0),
    "IncrementalTemperature": ("incremental_temperature", -100.0, 100.0),
    "IncrementalTint": ("incremental_tint", -100.0, 100.0),
    "Exposure2012": ("exposure", -5.0, 5.0),
    "Contrast2012": ("contrast", -100.0, 100.0),
    "Highlights2012": ("highlights", -100.0, 100.0),
    "Shadows2012": ("shadows", -100.0, 100.0),
    "Whites2012": ("whites", -100.0, 100.0),
    "Blacks2012": ("blacks", -100.0, 100.0),
    "Vibrance": ("vibrance", -100.0, 100.0),
    "Saturation": ("saturation", -100.0, 100.0),
    "ParametricShadows": ("parametric_shadows", -100.0, 100.0),
    "ParametricDarks": ("parametric_darks", -100.0, 100.0),
    "ParametricLights": ("parametric_lights", -100.0, 100.0),
    "ParametricHighlights": ("parametric_highlights", -100.0, 100.0),
    "ParametricShadowSplit": ("parametric_shadow_split", 5.0, 95.0),
    "ParametricMidtoneSplit": ("parametric_midtone_split", 5.0, 95.0),
    "ParametricHighlightSplit": ("parametric_highlight_split", 5.0, 95.0),
    "SplitToningShadowHue": ("shadow_hue", 0.0, 360.0),
    "SplitToningShadowSaturation": ("shadow_saturation", 0.0, 100.0),
    "SplitToningHighlightHue": ("highlight_hue", 0.0, 360.0),
    "SplitToningHighlightSaturation": ("highlight_saturation", 0.0, 100.0),
    "SplitToningBalance": ("balance", -100.0, 100.0),
    "ColorGradeMidtoneHue": ("midtone_hue", 0.0, 360.0),
    "ColorGradeMidtoneSat": ("midtone_saturation", 0.0, 100.0),
    "ColorGradeGlobalHue": ("global_hue", 0.0, 360.0),
    "ColorGradeGlobalSat": ("global_saturation", 0.0, 100.0),
    "ColorGradeShadowLum": ("shadow_luminance", -100.0, 100.0),
    "ColorGradeMidtoneLum": ("midtone_luminance", -100.0, 100.0),
    "ColorGradeHighlightLum": ("highlight_luminance", -100.0, 100.0),
    "ColorGradeGlobalLum": ("global_luminance", -100.0, 100.0),
    "ColorGradeBlending": ("blending", 0.0, 100.0),
}
# key → (field, index): the eight-hue sliders.
_PER_HUE: dict[str, tuple[str, int]] = {
    f"{prefix}{hue}": (name, i)
    for prefix, name in (
        ("HueAdjustment", "hue"),
        ("SaturationAdjustment", "hsl_saturation"),
        ("LuminanceAdjustment", "hsl_luminance"),
        ("GrayMixer", "gray_mixer"),
    )
    for i, hue in enumerate(HUES)
}
_CURVES = {
    "ToneCurvePV2012": "tone_curve",
    "ToneCurvePV2012Red": "tone_curve_red",
    "ToneCurvePV2012Green": "tone_curve_green",
    "ToneCurvePV2012Blue": "tone_curve_blue",
}
# Descriptive keys: read (the name) or skipped without a word.
_DESCRIPTIVE = {
    "PresetType", "Cluster", "UUID", "Version", "ProcessVersion", "Name", "ShortName", "SortName", "Group",
    "Description", "Copyright", "ContactInfo", "HasSettings", "CameraModelRestriction", "ToneCurveName2012",
    "ToneCurveName", "AlreadyApplied", "RawFileName", "SupportsAmount", "SupportsAmount2", "SupportsColor",
    "SupportsMonochrome", "SupportsHighDynamicRange", "SupportsNormalDynamicRange", "SupportsSceneReferred",
    "SupportsOutputReferred", "RequiresRGBTables", "OverrideLookVignette", "PresetAmount", "internalName",
}  # fmt: skip
_LOCAL = {
    "Clarity2012", "Texture", "Dehaze", "Sharpness", "SharpenRadius", "SharpenDetail", "SharpenEdgeMasking",
    "LuminanceSmoothing", "LuminanceNoiseReductionDetail", "LuminanceNoiseReductionContrast", "ColorNoiseReduction",
    "ColorNoiseReductionDetail", "ColorNoiseReductionSmoothness", "PostCropVignetteAmount", "PostCropVignetteMidpoint",
    "PostCropVignetteFeather", "PostCropVignetteRoundness", "PostCropVignetteStyle",
    "PostCropVignetteHighlightContrast", "GrainAmount", "GrainSize", "GrainFrequency", "GrainSeed",
    "GradientBasedCorrections", "CircularGradientBasedCorrections", "PaintBasedCorrections",
    "MaskGroupBasedCorrections", "RetouchInfo", "RetouchAreas", "RedEyeInfo", "LensBlur", "DefringePurpleAmount",
    "DefringePurpleHueLo", "DefringePurpleHueHi", "DefringeGreenAmount", "DefringeGreenHueLo", "DefringeGreenHueHi",
    "ToneMapStrength", "ShadowsNR", "EnhanceDetail", "EnhanceSuperResolution", "EnhanceDenoise",
}  # fmt: skip
_CALIBRATION = {
    "RedHue", "RedSaturation", "GreenHue", "GreenSaturation", "BlueHue", "BlueSaturation", "ShadowTint",
    "CameraProfile", "CameraProfileDigest", "Look", "LookTable", "RGBTable", "Table",
}  # fmt: skip
_LEGACY = {
    "Exposure", "Contrast", "Brightness", "Shadows", "FillLight", "HighlightRecovery", "Clarity", "ToneCurve",
    "ToneCurveRed", "ToneCurveGreen", "ToneCurveBlue",
}  # fmt: skip
_GEOMETRY_PREFIXES = ("Crop", "HasCrop", "Perspective", "Lens", "Upright", "AutoLateralCA", "ChromaticAberration")
_GEOMETRY = {"VignetteAmount", "VignetteMidpoint", "Orientation"}  # lens vignetting (the lens profile's)


def _classify(key: str) -> str | None:
    """Why a key that is not read is ignored (None: it is unknown)."""
    if key in _LOCAL:
        return LOCAL
    if key in _CALIBRATION or key.startswith("Look"):
        return CALIBRATION
    if key in _GEOMETRY or key.startswith(_GEOMETRY_PREFIXES):
        return GEOMETRY
    if key.startswith("Auto"):
        return AUTOMATIC
    if key in _LEGACY:
        return LEGACY
    return None


# -- from raw key/values to settings -------------------------------------------------------------
RawValue = str | float | bool | list[Any]


def settings_from(raw: Mapping[str, RawValue], *, name: str = "") -> PresetSettings:
    """Typed settings from a preset's raw key → value map (strings from XMP, numbers from Lua)."""
    reading = _Reading(values={"name": name})
    for key, value in raw.items():
        reading.read(key, value)
    return reading.settings()


@dataclass
class _Reading:
    """What :func:`settings_from` has read so far."""

    values: dict[str, Any]
    per_hue: dict[str, list[float]] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def read(self, key: str, value: RawValue) -> None:
        if key in _NUMBERS:
            field_name, lo, hi = _NUMBERS[key]
            self.values[field_name] = self.clamped(key, _number(key, value), lo, hi)
        elif key in _PER_HUE:
            field_name, index = _PER_HUE[key]
            self.per_hue.setdefault(field_name, [0.0] * 8)[index] = self.clamped(key, _number(key, value), -100, 100)
        elif key in _CURVES:
            self.values[_CURVES[key]] = _curve(key, value)
        elif key == "ConvertToGrayscale":
            self.values["grayscale"] = _bool(key, value)
        elif key == "WhiteBalance":
            self.values["white_balance"] = str(value).strip()
            if self.values["white_balance"].lower() == "auto":
                self.ignored.append((key, AUTO_WB))
                return
        elif key in _DESCRIPTIVE:
            if key == "Name" and not self.values["name"] and isinstance(value, str):
                self.values["name"] = value.strip()[:200]
            return
        elif (why := _classify(key)) is not None:
            self.ignored.append((key, why))
            return
        else:
            self.unknown.append(key)
            return
        self.applied.append(key)

    def clamped(self, key: str, number: float, lo: float, hi: float) -> float:
        if not lo <= number <= hi:
            self.notes.append(f"{key}={number:g} is outside {lo:g}…{hi:g}; clamped")
        return min(max(number, lo), hi)

    def settings(self) -> PresetSettings:
        values = dict(self.values)
        for field_name, eight in self.per_hue.items():
            values[field_name] = tuple(eight)
        if str(values.get("white_balance", "")).lower() in ("as shot", "auto"):
            # A sidecar's or an "As Shot" preset's kelvin are the camera's own: the photo's white balance stays.
            for key in ("Temperature", "Tint"):
                if key in self.applied:
                    self.applied.remove(key)
                    self.ignored.append((key, f"white balance is {values['white_balance']!r}: the photo's own is kept"))
            values.pop("temperature", None)
            values.pop("tint", None)
        return PresetSettings(
            **values,
            applied=tuple(self.applied),
            ignored=tuple(self.ignored),
            unknown=tuple(self.unknown),
            notes=tuple(self.notes),
        )


def _number(key: str, value: RawValue) -> float:
    if isinstance(value, (bool, list)):
        raise JobInputError(f"preset setting {key} is not a number; export the preset again from Lightroom")
    try:
        number = float(value)
    except ValueError:
        raise JobInputError(
            f"preset setting {key}={str(value)[:40]!r} is not a number; export the preset again from Lightroom"
        ) from None
    if not math.isfinite(number):
        raise JobInputError(f"preset setting {key} is not a finite number; export the preset again from Lightroom")
    return number


def _bool(key: str, value: RawValue) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise JobInputError(f"preset setting {key}={str(value)[:40]!r} is not True or False")


def _curve(key: str, value: RawValue) -> Curve:
    """A point curve from ``["x, y", …]`` (XMP) or ``[x, y, x, y, …]`` (Lua): sorted, clamped, unique inputs."""
    if not isinstance(value, list):
        raise JobInputError(f"preset setting {key} is not a list of curve points")
    numbers: list[float] = []
    for item in value[: 2 * MAX_CURVE_POINTS]:
        parts = item.split(",") if isinstance(item, str) else [item]
        numbers.extend(_number(key, p.strip() if isinstance(p, str) else p) for p in parts)
    if len(numbers) % 2 or len(numbers) < 4:
        raise JobInputError(f"preset setting {key} needs at least two (input, output) points")
    points: dict[float, float] = {}
    for x, y in zip(numbers[::2], numbers[1::2], strict=True):
        points[min(max(x, 0.0), 255.0)] = min(max(y, 0.0), 255.0)
    if len(points) < 2:
        raise JobInputError(f"preset setting {key} needs points at two different inputs")
    return tuple(sorted(points.items()))


# -- .xmp ----------------------------------------------------------------------------------------
class _RefusedError(Exception):
    """Raised from an expat handler: the document holds something a preset never needs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Node:
    tag: str  # "{namespace}local"
    attrs: dict[str, str]
    children: list[_Node]
    text: str = ""


def _parse_xml(data: bytes, what: str) -> _Node:
    """The XML element tree of ``data``, refusing any DOCTYPE (hence every entity declaration)."""
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    root = _Node("", {}, [])
    stack = [root]

    def refuse(*_: Any) -> Any:
        raise _RefusedError("declares a DOCTYPE or entities (a Lightroom preset has none)")

    def name(raw: str) -> str:
        return "{" + raw if "}" in raw else raw

    def start(tag: str, attrs: dict[str, str]) -> None:
        if len(stack) > MAX_DEPTH:
            raise _RefusedError(f"nests elements deeper than {MAX_DEPTH}")
        node = _Node(name(tag), {name(k): v for k, v in attrs.items()}, [])
        stack[-1].children.append(node)
        stack.append(node)

    def end(_: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if len(stack) > 1:
            stack[-1].text += data

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except _RefusedError as exc:
        raise JobInputError(f"{what} {exc.reason}; refused: export it again from Lightroom") from None
    except expat.ExpatError as exc:
        raise JobInputError(
            f"{what} is not valid XML ({expat.ErrorString(exc.code)}, line {exc.lineno});"
            " export it again from Lightroom"
        ) from None
    if not root.children:
        raise JobInputError(f"{what} is empty; export it again from Lightroom")
    return root.children[0]


def _find_all(node: _Node, tag: str) -> list[_Node]:
    found = [node] if node.tag == tag else []
    for child in node.children:
        found.extend(_find_all(child, tag))
    return found


def _xmp_value(node: _Node) -> RawValue | None:
    """A ``crs:`` property element's value: its text, a Seq/Bag's items, an Alt's first; None for a struct."""
    if not node.children:
        return node.text.strip()
    if len(node.children) == 1 and node.children[0].tag in (f"{{{RDF}}}Seq", f"{{{RDF}}}Bag", f"{{{RDF}}}Alt"):
        items = [li.text.strip() for li in node.children[0].children if li.tag == f"{{{RDF}}}li"]
        if node.children[0].tag == f"{{{RDF}}}Alt":
            return items[0] if items else ""
        return items
    return None  # a struct (a correction, a profile's look): not a value


def parse_xmp(data: bytes, *, what: str = "preset") -> dict[str, RawValue]:
    """The top-level ``crs:`` settings of an XMP preset (or sidecar), as raw strings and lists."""
    root = _parse_xml(data, what)
    rdf = _find_all(root, f"{{{RDF}}}RDF")
    if not rdf:
        raise JobInputError(f"{what} is XML but not XMP (no rdf:RDF); export the preset from Lightroom as .xmp")
    raw: dict[str, RawValue] = {}
    for desc in (c for c in rdf[0].children if c.tag == f"{{{RDF}}}Description"):
        for attr, value in desc.attrs.items():
            if attr.startswith(f"{{{CRS}}}"):
                raw[attr[len(CRS) + 2 :]] = value
        for child in desc.children:
            if child.tag.startswith(f"{{{CRS}}}"):
                item = _xmp_value(child)
                raw[child.tag[len(CRS) + 2 :]] = item if item is not None else "(struct)"
    if not raw:
        raise JobInputError(f"{what} holds no Camera Raw settings (crs:); is it a Lightroom develop preset?")
    return raw


# -- .lrtemplate ---------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""
    (?P<space>\s+|--\[(?P<eq1>=*)\[.*?\](?P=eq1)\]|--[^\n]*)
  | (?P<long>\[(?P<eq2>=*)\[.*?\](?P=eq2)\])
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}\[\]=,;()\-+])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "\n": "\n", "a": "", "b": "", "f": ""}


class _Lua:
    """A reader of the Lua subset ``.lrtemplate`` files use: ``name = value`` with table constructors.

    Values: numbers, strings, ``true``/``false``/``nil``, tables, and a call of a
    name on one string (Lightroom's ``LOC "$$$/…=Text"``), read as the string.
    Nothing is evaluated.
    """

    def __init__(self, text: str, what: str) -> None:
        self.what = what
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise self.error(f"unexpected {text[pos : pos + 10]!r}")
            pos = m.end()
            kind = next(k for k in ("space", "long", "string", "number", "name", "punct") if m.group(k) is not None)
            if kind != "space":
                self.tokens.append((kind, m.group(kind)))
        self.i = 0

    def error(self, detail: str) -> JobInputError:
        return JobInputError(f"{self.what} is not a Lightroom .lrtemplate ({detail}); export it again from Lightroom")

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "end" or (value is not None and tok[1] != value):
            raise self.error(f"expected {value or 'a value'}, found {tok[1] or 'the end'!r}")
        self.i += 1
        return tok

    def chunk(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while self.peek()[0] != "end":
            if self.peek()[1] in (";", ","):
                self.i += 1
                continue
            kind, name = self.take()
            if (kind, name) == ("name", "return"):  # `return { … }` also appears
                out[name] = self.value(0)
                continue
            if kind != "name":
                raise self.error(f"expected `name = value`, found {name!r}")
            self.take("=")
            out[name] = self.value(0)
        return out

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.error("tables nest too deep")
        kind, tok = self.take()
        if kind == "number":
            return float(int(tok, 16)) if tok[:2].lower() == "0x" else float(tok)
        if kind == "punct" and tok in "-+":
            number = self.value(depth + 1)
            if not isinstance(number, float):
                raise self.error(f"{tok} before something that is not a number")
            return -number if tok == "-" else number
        if kind == "string":
            return _unescape(tok[1:-1])
        if kind == "long":
            return tok[tok.index("[", 1) + 1 : tok.rindex("]", 0, -1)].removeprefix("\n")
        if kind == "name":
            if tok in ("true", "false"):
                return tok == "true"
            if tok == "nil":
                return None
            nxt = self.peek()
            if nxt[0] in ("string", "long"):  # LOC "$$$/Key=Text"
                text = self.value(depth + 1)
                return text.split("=", 1)[1] if isinstance(text, str) and text.startswith("$$$/") else text
            if nxt[1] == "(":
                self.take("(")
                text = self.value(depth + 1)
                self.take(")")
                return text
            raise self.error(f"a name {tok!r} where a value should be")
        if tok == "{":
            return self.table(depth + 1)
        raise self.error(f"unexpected {tok!r}")

    def table(self, depth: int) -> dict[Any, Any] | list[Any]:
        keyed: dict[Any, Any] = {}
        items: list[Any] = []
        while self.peek()[1] != "}":
            if self.peek()[0] == "name" and self.peek(1)[1] == "=":
                key: Any = self.take()[1]
                self.take("=")
                keyed[key] = self.value(depth)
            elif self.peek()[1] == "[" and self.peek()[0] == "punct":
                self.take("[")
                key = self.value(depth)
                self.take("]")
                self.take("=")
                keyed[key] = self.value(depth)
            else:
                items.append(self.value(depth))
            if self.peek()[1] in (",", ";"):
                self.i += 1
            elif self.peek()[1] != "}":
                raise self.error(f"expected , or }} in a table, found {self.peek()[1] or 'the end'!r}")
        self.take("}")
        if keyed and items:
            keyed.update(enumerate(items, 1))
            return keyed
        return items if items else keyed


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body, flags=re.DOTALL)


def parse_lrtemplate(data: bytes, *, what: str = "preset") -> tuple[dict[str, RawValue], str]:
    """The ``value.settings`` table of an ``.lrtemplate`` (and its title), never evaluating the file."""
    text = _text(data, what)
    top = _Lua(text, what).chunk()
    table = next((v for v in top.values() if isinstance(v, dict)), None)
    if table is None:
        raise JobInputError(f"{what} has no preset table (`s = {{ … }}`); export it again from Lightroom")
    value = table.get("value")
    settings = value.get("settings") if isinstance(value, dict) else table.get("settings")
    if not isinstance(settings, dict) or not settings:
        raise JobInputError(f"{what} has no develop settings (value.settings); is it a Lightroom develop preset?")
    raw: dict[str, RawValue] = {}
    for key, v in settings.items():
        if not isinstance(key, str):
            continue
        raw[key] = "(struct)" if isinstance(v, dict) else v if v is not None else ""
    title = table.get("title")
    return raw, title.strip()[:200] if isinstance(title, str) else ""


def _text(data: bytes, what: str) -> str:
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" not in text:
            return text
    raise JobInputError(f"{what} is not text (UTF-8); export the preset again from Lightroom")


# -- either --------------------------------------------------------------------------------------
def parse(data: bytes, filename: str = "", *, what: str | None = None) -> PresetSettings:
    """A preset's settings from its bytes; the format by extension (``.xmp``/``.lrtemplate``) or content."""
    what = what or (f"preset {filename}" if filename else "preset")
    if not data.strip():
        raise JobInputError(f"{what} is empty; upload the .xmp or .lrtemplate exported from Lightroom")
    if len(data) > MAX_BYTES:
        raise JobInputError(f"{what} is {len(data) // 1024} kB, over the {MAX_BYTES // 1024**2} MB a preset can be")
    lower = filename.lower()
    head = data[:200].lstrip(b"\xef\xbb\xbf \t\r\n")
    if lower.endswith(".lrtemplate") or (not lower.endswith(".xmp") and not head.startswith(b"<")):
        raw, title = parse_lrtemplate(data, what=what)
        return settings_from(raw, name=title)
    return settings_from(parse_xmp(data, what=what))


def load(path: str | Path) -> PresetSettings:
    """A preset file on disk (:func:`parse`)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise JobInputError(f"cannot read preset {p}: {exc.strerror or exc}") from None
    return parse(data, p.name)
