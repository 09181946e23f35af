"""The ``.nac`` container: bytes in, validated fields out, and back. Pure Python, no torch.

``formats/nac.md`` is the byte-level specification; this module is its only implementation.
The reader checks every length, count and checksum against the actual input *before* slicing
or allocating anything sized by the file, so a hostile or damaged file costs at most a few
microseconds and raises a ``NacError`` naming the offending field.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

from .errors import NacFormatError, NacLimitError

SIGNATURE = b"\x8bNAC\r\n\x1a\n"
VERSION = (1, 1)
"""The newest version this code reads; it writes the oldest minor version that holds the file."""
_PREFIX = struct.Struct("<8sBBH")  # signature, major, minor, header length
_CRC = struct.Struct("<I")


class Stream(IntEnum):
    """What a stream holds; kinds 16+ are metadata carried through untouched."""

    Z = 1
    Y = 2
    Y_ESCAPES = 3
    ALPHA = 4
    Y_CONTEXT = 5  # since 1.1: context models' second half of y (non-anchors)
    Y_CONTEXT_ESCAPES = 6
    ICC = 16
    EXIF = 17


SINCE_MINOR = {Stream.Y_CONTEXT: 1, Stream.Y_CONTEXT_ESCAPES: 1}
"""The minor version that introduced a stream kind; kinds not listed are from 1.0."""

MODES = {1: "L", 3: "RGB", 4: "RGBA"}
MODE_CODES = {v: k for k, v in MODES.items()}


@dataclass(frozen=True)
class Limits:
    """Upper bounds a reader enforces before allocating (configurable per call).

    The size limits are checked here, on the header alone. ``max_memory_bytes`` is checked by the
    codec against its estimate of what decoding the declared size needs: a file of a few hundred
    bytes can validly describe a flat 16384x16384 image, whose decode would need tens of GiB, so
    pixel limits alone cannot keep a hostile file from exhausting memory.
    """

    max_pixels: int = 2**28
    max_side: int = 2**16
    max_latent_elements: int = 2**28
    max_metadata_bytes: dict = field(default_factory=lambda: {Stream.ICC: 1 << 20, Stream.EXIF: 1 << 16})
    max_memory_bytes: int = 8 * 2**30

    def check_memory(self, need: int, width: int, height: int) -> None:
        """Raise ``NacLimitError`` if decoding a ``width``x``height`` image needs over the limit."""
        if need > self.max_memory_bytes:
            raise NacLimitError(
                f"decoding a {width}x{height} image needs about {need / 2**20:,.0f} MiB, over the "
                f"memory limit of {self.max_memory_bytes / 2**20:,.0f} MiB (raise Limits.max_memory_bytes, "
                f"or decode --max-memory)"
            )


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class NacFile:
    """Everything a ``.nac`` file says, independent of how it is laid out in bytes."""

    model_id: str
    weights_digest: bytes  # first 8 bytes of SHA-256 of the weight file
    quality: int  # 1..100, as asked for by the user (informational)
    rate: int  # the model's rate parameter in 1/256 level steps (what the decoder uses)
    width: int
    height: int
    mode: str  # "L", "RGB" or "RGBA"
    latent_shapes: tuple[tuple[int, int, int], ...]
    streams: tuple[tuple[Stream, bytes], ...]

    @property
    def version(self) -> tuple[int, int]:
        """The format version the file needs (and what ``pack`` writes): 1.1 with context streams."""
        return VERSION[0], max((SINCE_MINOR.get(kind, 0) for kind, _ in self.streams), default=0)

    def stream(self, kind: Stream) -> bytes:
        for k, data in self.streams:
            if k == kind:
                return data
        raise NacFormatError(f"stream {kind.name} is missing")

    def has_stream(self, kind: Stream) -> bool:
        return any(k == kind for k, _ in self.streams)


def pack(f: NacFile) -> bytes:
    """Serialize ``f``; raises ``ValueError`` for fields the format cannot hold."""
    mid = f.model_id.encode("utf-8")
    if not 1 <= len(mid) <= 64:
        raise ValueError(f"model_id must be 1..64 UTF-8 bytes, got {len(mid)}")
    if len(f.weights_digest) != 8:
        raise ValueError("weights_digest must be 8 bytes")
    body = bytearray()
    body += struct.pack("<B", len(mid)) + mid + f.weights_digest
    body += struct.pack("<BHIIBB", f.quality, f.rate, f.width, f.height, MODE_CODES[f.mode], 8)
    body += struct.pack("<B", len(f.latent_shapes))
    for shape in f.latent_shapes:
        body += struct.pack("<HHH", *shape)
    body += struct.pack("<B", len(f.streams))
    for kind, data in f.streams:
        body += struct.pack("<BII", int(kind), len(data), zlib.crc32(data))
    head = _PREFIX.pack(SIGNATURE, *f.version, len(body)) + bytes(body)
    out = bytearray(head)
    out += _CRC.pack(zlib.crc32(head[8:]))
    for _, data in f.streams:
        out += data
    return bytes(out)


class _Reader:
    """Bounds-checked little-endian field reader over the header body."""

    def __init__(self, data: bytes, start: int, end: int):
        self.data, self.pos, self.end = data, start, end

    def take(self, fmt: str, what: str):
        s = struct.Struct("<" + fmt)
        if self.pos + s.size > self.end:
            raise NacFormatError(f"header ends inside field '{what}' (header is {self.end - 8} bytes)")
        values = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return values

    def raw(self, n: int, what: str) -> bytes:
        if self.pos + n > self.end:
            raise NacFormatError(f"header ends inside field '{what}' ({n} bytes declared)")
        b = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return b


def unpack(data: bytes, limits: Limits = DEFAULT_LIMITS) -> NacFile:
    """Parse and fully validate ``data``; any problem raises a ``NacError`` subclass."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    n = len(data)
    if n < _PREFIX.size:
        if SIGNATURE.startswith(data[:8]) and n > 0:
            raise NacFormatError(f"file is truncated: {n} bytes, shorter than the {_PREFIX.size}-byte prefix")
        raise NacFormatError(f"not a .nac file: {n} bytes, signature missing")
    sig, major, minor, hlen = _PREFIX.unpack_from(data, 0)
    if sig != SIGNATURE:
        raise NacFormatError(f"not a .nac file: signature is {sig!r}, expected {SIGNATURE!r}")
    if major != VERSION[0]:
        raise NacFormatError(f"unsupported .nac version {major}.{minor}; this reader supports {VERSION[0]}.x")
    body_end = _PREFIX.size + hlen
    if body_end + _CRC.size > n:
        raise NacFormatError(f"file is truncated: its {hlen}-byte header needs {body_end + _CRC.size} bytes "
                             f"with prefix and checksum, the file has {n}")
    (crc,) = _CRC.unpack_from(data, body_end)
    if zlib.crc32(data[8:body_end]) != crc:
        raise NacFormatError("header checksum mismatch: the header is damaged")

    r = _Reader(data, _PREFIX.size, body_end)
    (mlen,) = r.take("B", "model_id length")
    if not 1 <= mlen <= 64:
        raise NacFormatError(f"model_id length {mlen} is outside 1..64")
    try:
        model_id = r.raw(mlen, "model_id").decode("utf-8")
    except UnicodeDecodeError as e:
        raise NacFormatError(f"model_id is not UTF-8: {e}") from None
    digest = r.raw(8, "weights digest")
    quality, rate, width, height, mode_code, depth = r.take("BHIIBB", "image header")
    if not 1 <= quality <= 100:
        raise NacFormatError(f"quality {quality} is outside 1..100")
    if mode_code not in MODES:
        raise NacFormatError(f"mode code {mode_code} is unknown (known: {sorted(MODES)})")
    if depth != 8:
        raise NacFormatError(f"bit depth {depth} is unsupported (only 8)")
    if width < 1 or height < 1:
        raise NacFormatError(f"image size {width}x{height} is empty")
    if width > limits.max_side or height > limits.max_side:
        raise NacLimitError(f"image size {width}x{height} exceeds the side limit {limits.max_side}")
    if width * height > limits.max_pixels:
        raise NacLimitError(f"image size {width}x{height} = {width * height} pixels exceeds the limit {limits.max_pixels}")
    (nlat,) = r.take("B", "latent count")
    shapes = []
    for i in range(nlat):
        c, h, w = r.take("HHH", f"latent {i} shape")
        if c * h * w == 0:
            raise NacFormatError(f"latent {i} shape {c}x{h}x{w} is empty")
        if c * h * w > limits.max_latent_elements:
            raise NacLimitError(f"latent {i} shape {c}x{h}x{w} exceeds {limits.max_latent_elements} elements")
        shapes.append((c, h, w))
    (nstreams,) = r.take("B", "stream count")
    table = []
    seen = set()
    for i in range(nstreams):
        kind_code, length, scrc = r.take("BII", f"stream {i} entry")
        try:
            kind = Stream(kind_code)
        except ValueError:
            raise NacFormatError(f"stream {i} has unknown kind {kind_code}") from None
        if SINCE_MINOR.get(kind, 0) > minor:
            raise NacFormatError(f"stream {kind.name} needs .nac version 1.{SINCE_MINOR[kind]}, the file says 1.{minor}")
        if kind in seen:
            raise NacFormatError(f"stream {kind.name} appears twice")
        seen.add(kind)
        cap = limits.max_metadata_bytes.get(kind)
        if cap is not None and length > cap:
            raise NacLimitError(f"{kind.name} metadata is {length} bytes, over the limit {cap}")
        table.append((kind, length, scrc))
    if r.pos != body_end:
        raise NacFormatError(f"header has {body_end - r.pos} unexplained trailing bytes")
    total = body_end + _CRC.size + sum(length for _, length, _ in table)
    if total != n:
        raise NacFormatError(f"stream lengths add up to a {total}-byte file, but it has {n} bytes")
    streams = []
    pos = body_end + _CRC.size
    for kind, length, scrc in table:
        chunk = data[pos : pos + length]
        if zlib.crc32(chunk) != scrc:
            raise NacFormatError(f"stream {kind.name} checksum mismatch: the data is damaged")
        streams.append((kind, chunk))
        pos += length
    return NacFile(model_id, digest, quality, rate, width, height, MODES[mode_code], tuple(shapes), tuple(streams))
