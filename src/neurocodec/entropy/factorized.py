"""The hyper-latent z: one learned PMF per channel (the factorized prior), over a clamped range."""

from __future__ import annotations

import numpy as np

from .tables import GroupedTables


class FactorizedCoder:
    """``offsets[c]`` is the smallest symbol of channel c; ``pmfs[c]`` its probabilities."""

    def __init__(self, offsets: np.ndarray, pmfs: list[np.ndarray]):
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.tables = GroupedTables(pmfs)
        self.lows = self.offsets
        self.highs = self.offsets + self.tables.sizes - 1

    def clamp(self, z: np.ndarray) -> np.ndarray:
        """Clamp integer z of shape (C, H, W) into each channel's range (the encoder does this first)."""
        return np.clip(z, self.lows[:, None, None], self.highs[:, None, None])

    def encode(self, z: np.ndarray) -> bytes:
        c = z.shape[0]
        groups = np.repeat(np.arange(c), z[0].size)
        return self.tables.encode((z - self.offsets[:, None, None]).reshape(-1), groups)

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        c, h, w = shape
        groups = np.repeat(np.arange(c), h * w)
        sym = self.tables.decode(data, groups, "z").reshape(c, h, w)
        return sym + self.offsets[:, None, None]
