"""Codes of the papers' autoencoders: one PMF per code position, at any odd multiple of a fine step.

The weight file stores, for every code position, integer counts of the training codes on a fine
grid (bin ``i`` covers values within half a ``fine_step`` of ``i * fine_step``). Quantizing with
step ``k * fine_step`` for odd ``k`` merges exactly ``k`` neighbouring fine bins into one coarse
bin, so the PMF for any step is an integer sum of stored counts (plus one per fine bin, so every
in-range symbol stays codable), divided once by the total. Integer sums and one correctly rounded
division give the same table on every machine, which is what the decoder's parse depends on.

Decoding reconstructs each symbol as the centroid of the training codes in its coarse bin rather
than its midpoint, which lowers the error of the ReLU codes' spike at zero at no cost in bits.
"""

from __future__ import annotations

import functools

import numpy as np

from .tables import GroupedTables


class HistogramCoder:
    """``counts[d, b]``: training codes of position d in fine bin ``origin + b``."""

    def __init__(self, counts: np.ndarray, origin: int, fine_step: float):
        self.counts = np.asarray(counts, dtype=np.int64)
        if self.counts.ndim != 2 or self.counts.shape[1] < 2:
            raise ValueError(f"counts must be (positions, bins>=2), got {self.counts.shape}")
        self.origin = int(origin)
        self.fine_step = float(fine_step)
        self.positions, self.bins = self.counts.shape

    @property
    def max_step(self) -> int:
        """The largest odd k that still leaves every position at least two symbols."""
        k = max(1, (self.bins - 1) // 2)
        return k if k % 2 else k - 1

    def _check(self, k: int) -> None:
        if not (1 <= k <= self.max_step and k % 2 == 1):
            raise ValueError(f"step multiplier {k} must be odd and within 1..{self.max_step}")

    def symbols(self, code: np.ndarray, k: int) -> np.ndarray:
        """Quantize a flat float code of ``positions`` values to coarse symbols (any integers)."""
        self._check(k)
        fine = np.clip(np.round(code / self.fine_step), self.origin, self.origin + self.bins - 1).astype(np.int64)
        return np.floor_divide(fine + (k - 1) // 2, k)

    @functools.lru_cache(maxsize=16)
    def _tables(self, k: int) -> tuple[int, GroupedTables, np.ndarray]:
        """(first symbol, coder over symbols first.., centroid value of each (position, symbol))."""
        self._check(k)
        h = (k - 1) // 2
        lo_sym = (self.origin + h) // k
        hi_sym = (self.origin + self.bins - 1 + h) // k
        n_sym = hi_sym - lo_sym + 1
        start = lo_sym * k - h  # fine index where coarse symbol lo_sym begins
        left = self.origin - start
        right = n_sym * k - left - self.bins
        smoothed = np.pad(self.counts + 1, ((0, 0), (left, right)))
        fine_index = np.arange(start, start + n_sym * k, dtype=np.int64)
        coarse = smoothed.reshape(self.positions, n_sym, k).sum(axis=2)
        moment = (smoothed * fine_index).reshape(self.positions, n_sym, k).sum(axis=2)
        centroids = moment / coarse * self.fine_step
        pmfs = [row / row.sum() for row in coarse.astype(np.float64)]
        return lo_sym, GroupedTables(pmfs), centroids

    def encode(self, symbols: np.ndarray, k: int) -> bytes:
        lo, tables, _ = self._tables(k)
        return tables.encode(symbols - lo, np.arange(self.positions))

    def decode(self, data: bytes, k: int) -> np.ndarray:
        lo, tables, _ = self._tables(k)
        return tables.decode(data, np.arange(self.positions), "code") + lo

    def values(self, symbols: np.ndarray, k: int) -> np.ndarray:
        """Reconstructed code values (float64) for decoded symbols."""
        lo, _, centroids = self._tables(k)
        return centroids[np.arange(self.positions), symbols - lo]

    @classmethod
    def fit(cls, codes: np.ndarray, max_bins: int = 1024) -> "HistogramCoder":
        """Counts of training ``codes`` (N, positions) on a power-of-two fine grid of <= max_bins bins."""
        lo, hi = float(codes.min()), float(codes.max())
        span = max(hi - lo, 1e-6)
        fine_step = 2.0 ** np.ceil(np.log2(span / (max_bins - 2)))
        first, last = int(np.round(lo / fine_step)), int(np.round(hi / fine_step))
        last = max(last, first + 2)  # a constant position still gets a codable table
        idx = np.round(codes / fine_step).astype(np.int64) - first
        bins = last - first + 1
        counts = np.stack([np.bincount(idx[:, d], minlength=bins) for d in range(codes.shape[1])])
        return cls(counts, first, fine_step)
