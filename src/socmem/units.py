"""Units as people write them: sizes, addresses, bandwidths, rates, times, pixel formats.

Parsing accepts what an engineer types into a YAML file or on a command line, and
formatting gives it back the same way:

* sizes: ``4096``, ``4K``, ``512MiB``, ``2G``, ``0x8000_0000``, ``1.5GiB``.  Bare
  ``K``/``M``/``G``/``T`` are binary as in the kernel's ``memparse()``
  (lib/cmdline.c); ``KiB``... are binary; ``KB``/``MB``/``GB`` are decimal (SI).
* addresses: integers or hex with optional ``_`` separators, shown as ``0x8000_0000``.
* bandwidth: ``51.2GB/s``, ``800MB/s``, ``1.5GiB/s`` (bytes per second; SI by default,
  as perf-anchors.md counts GB/s = 10^9 B/s).
* transfer rate: ``6400MT/s``; frequency: ``60Hz``, ``1.2GHz``; pixel rate
  ``497.7Mpix/s``; time: ``33ms``, ``16.7ms``, ``10us``, ``500ns``, ``2s``.

Each ``parse_*`` raises :class:`ValueError` with the accepted forms in the message, so
pydantic validation turns it into a field error with a line number.  The ``Size``,
``Address``, ... ``Annotated`` types plug the parsers into pydantic models and serialise
back to the human form (so a model dumped to YAML reads like the file it came from).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

_BINARY = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": TiB, "p": 1 << 50}
_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}

_NUM = r"(?P<num>[0-9][0-9_]*(?:\.[0-9_]+)?(?:[eE][+-]?[0-9]+)?)"
_HEX = re.compile(r"^0[xX](?P<hex>[0-9a-fA-F_]+)$")
_SIZE = re.compile(rf"^{_NUM}\s*(?P<prefix>[kKmMgGtTpP]?)(?P<suffix>i?[bB]?)$")


def _number(text: str) -> float:
    return float(text.replace("_", ""))


def _exact_int(value: float, text: str, what: str) -> int:
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{what} {text!r} is not a whole number of bytes")
    return int(value)


def parse_size(value: Any) -> int:
    """Parse a size in bytes: ``4096``, ``4K``, ``512MiB``, ``0x2000_0000``, ``16MB``."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number or a string such as '512MiB', not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size {value} is negative")
        return value
    if isinstance(value, float):
        return _exact_int(value, str(value), "size")
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as '512MiB' or '0x1000', got {value!r}")
    text = value.strip()
    m = _HEX.match(text)
    if m:
        return int(m["hex"].replace("_", ""), 16)
    m = _SIZE.match(text)
    if not m:
        raise ValueError(
            f"cannot read size {value!r}: expected a number with an optional unit "
            "(4K, 512MiB, 2G, 16MB) or hex (0x8000_0000)"
        )
    prefix = m["prefix"].lower()
    suffix = m["suffix"]
    if suffix == "i":
        raise ValueError(f"cannot read size {value!r}: did you mean '{m['num']}{m['prefix']}iB'?")
    if suffix == "b" and prefix:
        raise ValueError(
            f"cannot read size {value!r}: write B for bytes ('{m['num']}{m['prefix']}B')"
        )
    # K/M/G and KiB/MiB/GiB are binary (memparse); KB/MB/GB are SI
    scale = _SI[prefix] if suffix == "B" else _BINARY[prefix]
    return _exact_int(_number(m["num"]) * scale, text, "size")


def parse_address(value: Any) -> int:
    """Parse a physical or bus address: ``0x8000_0000``, ``2147483648``, ``2G``."""
    return parse_size(value)


def format_size(n: int, exact: bool = True) -> str:
    """Format bytes the way a person writes them: ``512MiB``, ``4KiB``, ``1536MiB``, ``100B``.

    With ``exact`` (the default, used when writing files) the largest binary unit that
    divides ``n`` is chosen, so the text parses back to the same number; otherwise the
    value is rounded to three significant figures for tables (``11.9MiB``).
    """
    if n < 0:
        return "-" + format_size(-n, exact)
    units = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))
    for unit, scale in units:
        if n >= scale and (n % scale == 0 or not exact):
            return f"{n // scale}{unit}" if n % scale == 0 else f"{_g(n / scale)}{unit}"
    return f"{n}B"


def format_address(addr: int, width: int = 0) -> str:
    """Format an address as hex grouped by 16 bits: ``0x8000_0000``, ``0x1_0000_0000``."""
    digits = f"{addr:x}"
    if width:
        digits = digits.rjust(width, "0")
    groups = []
    while digits:
        groups.append(digits[-4:])
        digits = digits[:-4]
    return "0x" + "_".join(reversed(groups or ["0"]))


def _parse_scaled(value: Any, units: dict[str, float], what: str, example: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected {what} such as {example!r}, not a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{what} {value} is negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected {what} such as {example!r}, got {value!r}")
    text = value.strip().replace(" ", "")
    m = re.match(rf"^{_NUM}(?P<unit>[A-Za-zµ/]*)$", text)
    if not m or m["unit"] not in units:
        accepted = ", ".join(u for u in units if u)
        raise ValueError(
            f"cannot read {what} {value!r}: expected e.g. {example!r} (units: {accepted})"
        )
    return _number(m["num"]) * units[m["unit"]]


_BW_UNITS: dict[str, float] = {"B/s": 1.0}
for _p, _s in (("K", 1e3), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)):
    _BW_UNITS[f"{_p}B/s"] = _s
for _p, _s in (("Ki", KiB), ("Mi", MiB), ("Gi", GiB), ("Ti", TiB)):
    _BW_UNITS[f"{_p}B/s"] = float(_s)
_BW_UNITS.update({"Gbps": 1e9 / 8, "Mbps": 1e6 / 8, "Gbit/s": 1e9 / 8, "Mbit/s": 1e6 / 8})


def parse_bandwidth(value: Any) -> float:
    """Parse bytes per second: ``51.2GB/s``, ``800MB/s``, ``1.5GiB/s``, ``100Mbps``."""
    return _parse_scaled(value, _BW_UNITS, "a bandwidth", "51.2GB/s")


def format_bandwidth(bps: float) -> str:
    """Format bytes per second with SI prefixes: ``51.2GB/s``, ``746MB/s``."""
    for unit, scale in (("TB/s", 1e12), ("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3)):
        if bps >= scale:
            return f"{_g(bps / scale)}{unit}"
    return f"{_g(bps)}B/s"


_MT_UNITS = {"MT/s": 1e6, "GT/s": 1e9, "T/s": 1.0, "MHz": 1e6, "Mbps": 1e6, "": 1e6}


def parse_transfer_rate(value: Any) -> float:
    """Parse a DRAM data rate in transfers per second: ``6400MT/s`` (a bare number is MT/s)."""
    return _parse_scaled(value, _MT_UNITS, "a data rate", "6400MT/s")


def format_transfer_rate(tps: float) -> str:
    """Format transfers per second as ``6400MT/s``."""
    return f"{_g(tps / 1e6)}MT/s"


_HZ_UNITS = {"Hz": 1.0, "kHz": 1e3, "KHz": 1e3, "MHz": 1e6, "GHz": 1e9, "fps": 1.0, "": 1.0}


def parse_frequency(value: Any) -> float:
    """Parse a frequency or frame rate: ``60Hz``, ``30fps``, ``1.2GHz`` (a bare number is Hz)."""
    return _parse_scaled(value, _HZ_UNITS, "a frequency", "60Hz")


def format_frequency(hz: float) -> str:
    """Format a frequency: ``60Hz``, ``1.2GHz``."""
    for unit, scale in (("GHz", 1e9), ("MHz", 1e6), ("kHz", 1e3)):
        if hz >= scale:
            return f"{_g(hz / scale)}{unit}"
    return f"{_g(hz)}Hz"


_PIX_UNITS: dict[str, float] = {}
for _word in ("pix/s", "px/s", "pixel/s", "pixels/s", "p/s"):
    for _p, _s in (("", 1.0), ("K", 1e3), ("M", 1e6), ("G", 1e9)):
        _PIX_UNITS[f"{_p}{_word}"] = _s


def parse_pixel_rate(value: Any) -> float:
    """Parse pixels per second: ``2Gpix/s``, ``497.7Mpix/s``."""
    return _parse_scaled(value, _PIX_UNITS, "a pixel rate", "2Gpix/s")


def format_pixel_rate(pps: float) -> str:
    """Format pixels per second: ``2Gpix/s``."""
    for unit, scale in (("Gpix/s", 1e9), ("Mpix/s", 1e6), ("Kpix/s", 1e3)):
        if pps >= scale:
            return f"{_g(pps / scale)}{unit}"
    return f"{_g(pps)}pix/s"


_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0}


def parse_duration(value: Any) -> float:
    """Parse a duration in seconds: ``33ms``, ``16.7ms``, ``10us``, ``500ns``, ``2s``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"a duration needs a unit, e.g. '{value}ms' or '{value}s'")
    return _parse_scaled(value, _TIME_UNITS, "a duration", "33ms")


def format_duration(seconds: float) -> str:
    """Format seconds: ``33ms``, ``10us``, ``2s``."""
    if seconds == 0:
        return "0s"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{_g(seconds / scale)}{unit}"
    return f"{_g(seconds / 1e-9)}ns"


def _g(x: float) -> str:
    """Shortest faithful decimal for a display value: 51.2, 12.8, 0.75, 6400."""
    text = f"{x:.4g}"
    if "e" in text:
        text = f"{x:.1f}"
    return text


def _human(parse: Any, fmt: Any, pattern: str, description: str, base: type) -> Any:
    schema_type = "integer" if base is int else "number"
    return Annotated[
        base,
        BeforeValidator(parse),
        PlainSerializer(fmt, return_type=str, when_used="json-unless-none"),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "pattern": pattern},
                    {"type": schema_type, "minimum": 0},
                ],
                "description": description,
            }
        ),
    ]


Size = _human(
    parse_size,
    format_size,
    r"^\s*(0[xX][0-9a-fA-F_]+|[0-9][0-9_]*(\.[0-9_]+)?\s*([kKmMgGtTpP](i?[bB])?|[bB])?)\s*$",
    "A size in bytes: 4096, 4K, 512MiB, 2G, 16MB (SI), 0x2000_0000.",
    int,
)
Address = _human(
    parse_address,
    format_address,
    r"^\s*(0[xX][0-9a-fA-F_]+|[0-9][0-9_]*\s*[kKmMgGtT]?(i?B)?)\s*$",
    "An address: 0x8000_0000 or a decimal number.",
    int,
)
Bandwidth = _human(
    parse_bandwidth,
    format_bandwidth,
    r"^\s*[0-9][0-9_.eE+-]*\s*([KkMGT]i?B/s|B/s|Gbps|Mbps|Gbit/s|Mbit/s)\s*$",
    "Bytes per second: 51.2GB/s, 800MB/s, 1.5GiB/s.",
    float,
)
TransferRate = _human(
    parse_transfer_rate,
    format_transfer_rate,
    r"^\s*[0-9][0-9_.]*\s*(MT/s|GT/s|T/s|MHz|Mbps)?\s*$",
    "DRAM data rate in transfers per second: 6400MT/s.",
    float,
)
Frequency = _human(
    parse_frequency,
    format_frequency,
    r"^\s*[0-9][0-9_.]*\s*(Hz|kHz|KHz|MHz|GHz|fps)?\s*$",
    "A frequency or frame rate: 60Hz, 30fps, 1.2GHz.",
    float,
)
PixelRate = _human(
    parse_pixel_rate,
    format_pixel_rate,
    r"^\s*[0-9][0-9_.]*\s*[KMG]?(pix|px|pixel|pixels|p)/s\s*$",
    "Pixels per second: 2Gpix/s, 497.7Mpix/s.",
    float,
)
Duration = _human(
    parse_duration,
    format_duration,
    r"^\s*[0-9][0-9_.]*\s*(s|ms|us|µs|ns|min)\s*$",
    "A duration with its unit: 33ms, 10us, 2s.",
    float,
)

# Bytes per pixel of the formats the multimedia masters move (perf-anchors.md §2a).
BYTES_PER_PIXEL: dict[str, float] = {
    "RAW8": 1.0,
    "RAW10": 1.25,  # MIPI CSI-2 packed, V4L2 SRGGB10P
    "RAW12": 1.5,  # V4L2 SRGGB12P
    "RAW16": 2.0,
    "NV12": 1.5,
    "NV21": 1.5,
    "P010": 3.0,
    "YUYV": 2.0,
    "RGB565": 2.0,
    "RGB888": 3.0,
    "RGBA8888": 4.0,
    "ARGB8888": 4.0,
    "XRGB8888": 4.0,
    "ABGR2101010": 4.0,
    "RGBA16F": 8.0,
}


def parse_hex_int(value: Any) -> int:
    """Parse an identifier or mask written in hex or decimal: ``0x2100``, ``8448``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer such as 0x2100, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative")
        return value
    text = value.strip().replace("_", "")
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise ValueError(f"cannot read {value!r} as an integer (e.g. 0x2100 or 8448)") from None


HexInt = _human(
    parse_hex_int,
    lambda n: f"{n:#x}",
    r"^\s*(0[xX][0-9a-fA-F_]+|[0-9][0-9_]*)\s*$",
    "An integer, usually written in hex: 0x2100.",
    int,
)
