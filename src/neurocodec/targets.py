"""Encoding to a file size (bits per pixel) or a fidelity (PSNR) instead of a quality.

The codec's rate setting is an integer (photo models: the header's rate in 1/256 steps of a
trained level, 256 * (levels - 1) + 1 settings; the papers' models: quality 1..100), and bits and
PSNR rise with it. A bisection over that integer finds the setting nearest the target in about
eleven encodes. The target is met when the result is within ``BPP_TOLERANCE`` (relative) or
``PSNR_TOLERANCE`` (dB); otherwise the result is the nearest the model can do, and ``note`` says
why the target was out of reach.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Callable

from . import metrics
from .codec import RATE_SCALE, Encoded, encode
from .io import Picture
from .zoo import Model, PhotoModel

BPP_TOLERANCE = 0.05
PSNR_TOLERANCE = 0.2


class TargetWarning(UserWarning):
    """A bpp or PSNR target could not be met; the message says how close the result is and why."""


@dataclass(frozen=True)
class Targeted:
    encoded: Encoded
    bpp: float
    psnr: float
    met: bool
    note: str = ""


def _settings(model: Model, device: str | None, effort: int) -> tuple[int, int, Callable[[Picture, int, bool], Encoded]]:
    """(lowest, highest, encode at setting) for ``model``."""
    if isinstance(model, PhotoModel):
        top = (model.levels - 1) * RATE_SCALE
        return 0, top, lambda pic, s, rec: encode(pic, model=model, reconstruct=rec, rate=s, device=device,
                                                  effort=effort)
    return 1, 100, lambda pic, s, rec: encode(pic, s, model, reconstruct=rec, effort=effort)  # refuses effort 1


def _first_true(lo: int, hi: int, pred: Callable[[int], bool]) -> int:
    """Smallest s in lo..hi with pred(s), or hi + 1 if none (pred assumed monotone)."""
    while lo <= hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid - 1
        else:
            lo = mid + 1
    return lo


def encode_to_target(
    pic: Picture, model: Model, target_bpp: float | None = None, target_psnr: float | None = None,
    device: str | None = None, effort: int = 0,
) -> Targeted:
    """Encode ``pic`` as close as ``model`` can to ``target_bpp`` or ``target_psnr`` (exactly one).
    Every probe of the search runs at ``effort``, so the result's bpp and PSNR are the file's."""
    if (target_bpp is None) == (target_psnr is None):
        raise ValueError("give exactly one of target_bpp and target_psnr")
    if target_bpp is not None and not 0 < target_bpp < math.inf:
        raise ValueError(f"target_bpp must be a positive number, got {target_bpp}")
    if target_psnr is not None and not 0 < target_psnr < math.inf:
        raise ValueError(f"target_psnr must be a positive number, got {target_psnr}")
    lo, hi, run = _settings(model, device, effort)
    pixels = pic.width * pic.height

    @functools.lru_cache(maxsize=None)
    def at(s: int, reconstruct: bool = True) -> tuple[Encoded, float, float]:
        """(encoded, bpp, PSNR); without reconstruction (enough for bpp) PSNR is NaN."""
        enc = run(pic, s, reconstruct)
        psnr = metrics.psnr(pic.color, enc.reconstruction.color) if reconstruct else float("nan")
        return enc, 8 * len(enc.data) / pixels, psnr

    if target_bpp is not None:
        first_over = _first_true(lo, hi, lambda s: at(s, False)[1] > target_bpp)
        candidates = {min(max(first_over - 1, lo), hi), min(first_over, hi)}
        best = min(candidates, key=lambda s: (abs(at(s, False)[1] - target_bpp), s))
        enc, bpp, psnr = at(best)
        met = abs(bpp - target_bpp) <= BPP_TOLERANCE * target_bpp
        if met:
            note = ""
        elif bpp > target_bpp and best == lo:
            note = f"the smallest file this model makes for this image is {bpp:.3f} bpp"
        elif bpp < target_bpp and best == hi:
            note = f"the largest file this model makes for this image is {bpp:.3f} bpp"
        else:
            note = f"adjacent settings jump past {target_bpp} bpp; the nearest gives {bpp:.3f} bpp"
    else:
        first_ok = _first_true(lo, hi, lambda s: at(s)[2] >= target_psnr)
        candidates = {min(max(first_ok - 1, lo), hi), min(first_ok, hi)}
        best = min(candidates, key=lambda s: (abs(at(s)[2] - target_psnr), -s))
        enc, bpp, psnr = at(best)
        met = abs(psnr - target_psnr) <= PSNR_TOLERANCE
        if met:
            note = ""
        elif psnr < target_psnr and best == hi:
            note = f"the highest PSNR this model reaches on this image is {psnr:.2f} dB"
        elif psnr > target_psnr and best == lo:
            note = f"even the lowest setting gives {psnr:.2f} dB on this image"
        else:
            note = f"adjacent settings jump past {target_psnr} dB; the nearest gives {psnr:.2f} dB"
    if not met:
        what = f"{target_bpp} bpp" if target_bpp is not None else f"{target_psnr} dB"
        warnings.warn(f"target {what} not met: {note}", TargetWarning, stacklevel=2)
    return Targeted(enc, bpp, psnr, met, note)
