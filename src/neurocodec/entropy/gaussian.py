"""The latent y: zero-mean discretized Gaussians chosen by scale index, with an escape path.

Residuals r = round(y - mean) are coded with table k = the smallest table scale >= the predicted
scale. Table k covers |r| <= R_k; anything larger is coded as the escape symbol and its value is
written to a separate stream as a zig-zag varint, so no value is ever clipped.
"""

from __future__ import annotations

import numpy as np

from ..errors import NacFormatError
from .tables import GroupedTables

_MAX_VARINT_BYTES = 5


class GaussianCoder:
    def __init__(self, scales: np.ndarray, radii: np.ndarray, pmfs: list[np.ndarray]):
        self.scales = np.asarray(scales, dtype=np.float64)
        self.radii = np.asarray(radii, dtype=np.int64)
        self.tables = GroupedTables(pmfs)

    def scale_index(self, scales: np.ndarray) -> np.ndarray:
        """Exact comparisons against the stored table: identical on every machine."""
        idx = np.searchsorted(self.scales, scales, side="left")
        return np.minimum(idx, len(self.scales) - 1)

    def encode(self, residuals: np.ndarray, index: np.ndarray) -> tuple[bytes, bytes]:
        r = residuals.reshape(-1).astype(np.int64)
        idx = index.reshape(-1)
        radius = self.radii[idx]
        escape = np.abs(r) > radius
        sym = np.where(escape, 2 * radius + 1, r + radius)
        return self.tables.encode(sym, idx), _encode_varints(r[escape])

    def decode(self, data: bytes, escapes: bytes, index: np.ndarray) -> np.ndarray:
        idx = index.reshape(-1)
        radius = self.radii[idx]
        sym = self.tables.decode(data, idx, "y")
        r = sym - radius
        escape = sym == 2 * radius + 1
        r[escape] = _decode_varints(escapes, int(escape.sum()))
        return r.reshape(index.shape)


def _encode_varints(values: np.ndarray) -> bytes:
    out = bytearray()
    for v in values.tolist():
        u = (v << 1) ^ (v >> 63)  # zig-zag
        while True:
            byte = u & 0x7F
            u >>= 7
            if u:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return bytes(out)


def _decode_varints(data: bytes, count: int) -> np.ndarray:
    values = np.empty(count, dtype=np.int64)
    pos = 0
    for i in range(count):
        u = shift = 0
        for n in range(_MAX_VARINT_BYTES + 1):
            if n == _MAX_VARINT_BYTES or pos >= len(data):
                raise NacFormatError(f"escape stream is damaged at value {i} of {count} (byte {pos})")
            b = data[pos]
            pos += 1
            u |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        values[i] = (u >> 1) ^ -(u & 1)
    if pos != len(data):
        raise NacFormatError(f"escape stream has {len(data) - pos} bytes left over after {count} values")
    return values
