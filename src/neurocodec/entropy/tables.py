"""Coding integer symbols that each pick one of several fixed PMFs by an integer group index.

Symbols are coded group by group (all symbols of table 0, then table 1, ...), so each group is a
single vectorized constriction call with one model instead of one call per symbol.
"""

from __future__ import annotations

import numpy as np
import constriction

from ..errors import NacFormatError


class GroupedTables:
    def __init__(self, pmfs: list[np.ndarray]):
        self.sizes = np.array([len(p) for p in pmfs], dtype=np.int64)
        self.models = [constriction.stream.model.Categorical(np.asarray(p, dtype=np.float64), perfect=False) for p in pmfs]

    def _partition(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions sorted by group (stable), and where each group's run starts and ends."""
        order = np.argsort(groups, kind="stable")
        return order, np.searchsorted(groups[order], np.arange(len(self.models) + 1))

    def encode(self, symbols: np.ndarray, groups: np.ndarray) -> bytes:
        """``symbols[i]`` in [0, sizes[groups[i]]); both flat int arrays of equal length."""
        return self.encode_parts([(symbols, groups)])

    def encode_parts(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
        """Several (symbols, groups) parts in one stream, to be decoded part by part in order
        (``decoder``): a decoder that needs part k to know how to read part k + 1 can, and the
        stream pays the coder's final-state overhead once, not once per part."""
        coder = constriction.stream.stack.AnsCoder()
        for symbols, groups in reversed(parts):  # ANS is a stack: encode in reverse
            symbols = symbols.astype(np.int32, copy=False)
            order, bounds = self._partition(groups)
            for g in range(len(self.models) - 1, -1, -1):
                lo, hi = bounds[g], bounds[g + 1]
                if hi > lo:
                    coder.encode_reverse(symbols[order[lo:hi]], self.models[g])
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, groups: np.ndarray, what: str) -> np.ndarray:
        reader = self.decoder(data, what)
        out = reader.next(groups)
        reader.finish()
        return out

    def decoder(self, data: bytes, what: str) -> "TablesDecoder":
        """Reads back what ``encode_parts`` wrote, one part per ``next`` call."""
        if len(data) % 4:
            raise NacFormatError(f"{what} stream length {len(data)} is not a multiple of 4")
        try:
            coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        except ValueError as e:
            raise NacFormatError(f"{what} stream is invalid: {e}") from None
        return TablesDecoder(self, coder, what)


class TablesDecoder:
    def __init__(self, tables: GroupedTables, coder, what: str):
        self.tables, self.coder, self.what = tables, coder, what

    def next(self, groups: np.ndarray) -> np.ndarray:
        """The next part's symbols, for a flat array of group indices."""
        order, bounds = self.tables._partition(groups)
        out = np.empty(len(groups), dtype=np.int64)
        for g in range(len(self.tables.models)):
            lo, hi = bounds[g], bounds[g + 1]
            if hi > lo:
                out[order[lo:hi]] = self.coder.decode(self.tables.models[g], int(hi - lo))
        return out

    def finish(self) -> None:
        if not self.coder.is_empty():
            raise NacFormatError(f"{self.what} stream has data left over after its last symbol")
