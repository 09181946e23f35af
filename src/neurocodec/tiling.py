"""Cutting large images into overlapping tiles, so memory stays bounded whatever the image size.

Tiles are laid out on the latent grid (one cell = 16x16 pixels) and every transform runs on one
tile plus a halo around it, of which only the interior is kept. The halo is wider than the reach
of the transforms, so a tiled result equals the untiled one up to float summation order, and the
file format does not change (the entropy model and the bitstream see the whole latent):

* g_a (four 5x5 stride-2 convolutions) reaches 2 + 4 + 8 + 16 = 30 pixels < 2 latents;
* g_s (four upsampling 3x3 sub-pixel convolutions) reaches 30 pixels, and with residual blocks
  further (``MeanScaleHyperprior.synthesis_reach``), which models refuse beyond ``SYNTHESIS_HALO``
  latents;
* h_s (two upsamplings and a 3x3 convolution) reaches 7 latents < 2 hyper-latents.

A tile that touches the image border gets no halo on that side, so the convolutions' zero padding
falls exactly where it falls on the whole image.

The encoder's tiling is a function of the image size only, never of memory or threads: g_a's
floats depend (by an ulp) on how the image is cut, so the bytes for an image, quality and model
stay the same on every run. The decoder cuts g_s the same way, so the pixels it returns are
exactly the encoder's reconstruction.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

TILE = 64
"""Interior of a tile in grid cells: 64 latents = 1024 pixels, about 4 MB of float32 per channel."""

HYPER_TILE = 32
"""Interior of a tile of the exact float64 hyper-synthesis, in hyper-latents (128 latents): its
im2col buffers take about 200 MB at this size, and smaller tiles would spend more on the halo."""

HALO = 2
"""Grid cells of context on each side of a tile of g_a (see the module docstring for why 2 suffice)."""

SYNTHESIS_HALO = 5
"""The same for g_s, whose residual blocks reach further. g_a keeps its 2: the encoder's tiling
decides its floats, so a wider one would change the bytes of large images that earlier versions
wrote. The decoder's wider halo leaves old files' pixels as they were, up to float summation
order: both halos exceed the old models' reach."""

def synthesis_halo(reach: int) -> int:
    """The decoder's halo for a synthesis reaching ``reach`` pixels: ``SYNTHESIS_HALO``, or wider
    for a model with a post-filter (``zoo.PhotoModel``), whose reach adds to g_s's. Only the
    decoder's tiles depend on it, and only up to float summation order."""
    return max(SYNTHESIS_HALO, reach // 16 + 1)


REFINE_HALO = SYNTHESIS_HALO
"""The same for the encoder's latent search (``refine``, efforts 1 and 2), which is not exact at a
tile's edge: the cost it descends reaches through g_s (5 latents) and the context model, and a
halo cuts both off. With g_a's 2 latents, held-out crops searched in forced 16-latent tiles came
out 0.31 % larger than searched whole (one of twelve 3.6 %); with 5, byte-identical, and a
2560x1920 effort-1 encode took 9 % longer and 11 % more memory (``benchmarks/refine_tiles.py``).
The sliced context reaches 2 x slices latents, further than 5, but what it adds past 5 measured
nothing. Only effort 1 and 2 files of images above ``UNTILED_MAX`` change; effort 0 has no search."""

UNTILED_MAX = 96 * 96
"""Latent grids up to this many cells (about 2.4 megapixels) are coded in one piece."""


@dataclass(frozen=True)
class Span:
    """One tile along one axis: compute ``start:stop``, keep ``keep_start:keep_stop`` (grid units)."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int

    @property
    def inner(self) -> slice:
        """The kept part, relative to the computed part."""
        return slice(self.keep_start - self.start, self.keep_stop - self.start)

    @property
    def keep(self) -> slice:
        return slice(self.keep_start, self.keep_stop)


def spans(length: int, tile: int | None, halo: int = HALO) -> list[Span]:
    """Tiles of ``tile`` cells covering ``0:length``, each widened by ``halo`` inside the bounds."""
    if tile is None or tile >= length:
        return [Span(0, length, 0, length)]
    if tile < 1 or halo < 0:
        raise ValueError(f"tile must be positive and halo non-negative, got {tile} and {halo}")
    return [
        Span(max(0, k - halo), min(length, k + tile + halo), k, min(length, k + tile))
        for k in range(0, length, tile)
    ]


def grid(rows: int, cols: int, tile: int | None, halo: int = HALO) -> Iterator[tuple[Span, Span]]:
    """(row span, column span) of every tile of a rows x cols grid, row by row."""
    return itertools.product(spans(rows, tile, halo), spans(cols, tile, halo))


def auto_tile(rows: int, cols: int) -> int | None:
    """The tile size for a latent grid: ``None`` (one piece) unless it is large. Size-only, see above."""
    return None if rows * cols <= UNTILED_MAX else TILE


def pixel_tile(color: np.ndarray, rows: Span, cols: Span) -> torch.Tensor:
    """Pixels of one tile as (1, 3, h, w) floats in [0, 1], edge-extended past the image like the
    untiled padding; built from the uint8 image so no float copy of the whole image is made."""
    h, w = color.shape[:2]
    r = np.minimum(np.arange(rows.start * 16, rows.stop * 16), h - 1)
    c = np.minimum(np.arange(cols.start * 16, cols.stop * 16), w - 1)
    part = color[r[:, None], c[None, :]]
    if part.shape[2] == 1:
        part = np.repeat(part, 3, axis=2)
    return torch.from_numpy(part)[None].permute(0, 3, 1, 2).float().div_(255)
