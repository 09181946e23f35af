"""Pillow's JPEG, WebP and AVIF as reference codecs, including "at the same file size" searches."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

# Settings follow the benchmark protocol (DESIGN.md) and ../shared/reference/kodak-rd.json.
SETTINGS = {
    "jpeg": {"format": "JPEG"},
    "webp": {"format": "WEBP", "method": 6},
    "avif": {"format": "AVIF", "speed": 4},
}


def available() -> list[str]:
    names = ["jpeg"]
    if features.check("webp"):
        names.append("webp")
    if features.check("avif"):
        names.append("avif")
    return names


@dataclass(frozen=True)
class Coded:
    codec: str
    quality: int
    data: bytes
    pixels: np.ndarray  # decoded, same shape as the input


def compress(pixels: np.ndarray, codec: str, quality: int) -> Coded:
    """Encode (H, W, 1|3) uint8 pixels with ``codec`` at ``quality`` and decode them back."""
    opts = dict(SETTINGS[codec])
    fmt = opts.pop("format")
    mode = "L" if pixels.shape[2] == 1 else "RGB"
    im = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels[:, :, :3], mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, quality=int(quality), **opts)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as back:
        out = np.asarray(back.convert(mode), dtype=np.uint8)
    return Coded(codec, int(quality), data, out.reshape(pixels.shape[0], pixels.shape[1], -1))


def at_least(pixels: np.ndarray, codec: str, target_bytes: int) -> Coded:
    """The lowest quality whose file is at least ``target_bytes`` (or quality 100 if none is)."""
    lo, hi = 1, 100
    best = compress(pixels, codec, hi)
    if len(best.data) < target_bytes:
        return best
    while lo < hi:  # sizes grow with quality; find the first quality reaching the target
        mid = (lo + hi) // 2
        c = compress(pixels, codec, mid)
        if len(c.data) >= target_bytes:
            hi, best = mid, c
        else:
            lo = mid + 1
    return best if best.quality == lo else compress(pixels, codec, lo)
