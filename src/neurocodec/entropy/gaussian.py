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
        return self.encode_parts([(residuals, index)])

    def encode_parts(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[bytes, bytes]:
        """(symbol stream, escape stream) of several (residuals, scale index) parts, read back
        part by part by ``decoder``; one part gives the same bytes as ``encode``."""
        symbols, escaped = [], []
        for residuals, index in parts:
            r = residuals.reshape(-1).astype(np.int64)
            idx = index.reshape(-1)
            radius = self.radii[idx]
            escape = np.abs(r) > radius
            symbols.append((np.where(escape, 2 * radius + 1, r + radius), idx))
            escaped.append(r[escape])
        return self.tables.encode_parts(symbols), _encode_varints(np.concatenate(escaped))

    def decode(self, data: bytes, escapes: bytes, index: np.ndarray) -> np.ndarray:
        reader = self.decoder(data, escapes)
        r = reader.next(index)
        reader.finish()
        return r

    def decoder(self, data: bytes, escapes: bytes) -> "GaussianDecoder":
        return GaussianDecoder(self, self.tables.decoder(data, "y"), escapes)


class GaussianDecoder:
    """Residuals part by part, as ``GaussianCoder.encode_parts`` wrote them."""

    def __init__(self, coder: GaussianCoder, symbols, escapes: bytes):
        self.coder, self.symbols, self.escapes, self.pos = coder, symbols, escapes, 0

    def next(self, index: np.ndarray) -> np.ndarray:
        idx = index.reshape(-1)
        radius = self.coder.radii[idx]
        sym = self.symbols.next(idx)
        r = sym - radius
        escape = sym == 2 * radius + 1
        r[escape], self.pos = _decode_varints(self.escapes, int(escape.sum()), self.pos)
        return r.reshape(index.shape)

    def finish(self) -> None:
        self.symbols.finish()
        if self.pos != len(self.escapes):
            raise NacFormatError(f"escape stream has {len(self.escapes) - self.pos} bytes left over after its last value")


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


def _decode_varints(data: bytes, count: int, pos: int = 0) -> tuple[np.ndarray, int]:
    """``count`` values from ``data[pos:]``, and the position after them."""
    values = np.empty(count, dtype=np.int64)
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
    return values, pos
