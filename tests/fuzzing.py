"""Mutators that turn valid ``.nac`` files into hostile ones, for the fuzz tests and the long run.

Two kinds, because they reach different code:

* ``mutate_bytes`` damages raw bytes (flips, truncations, splices, blown-up length fields). Nearly
  every such mutant dies at a CRC, so it fuzzes the container parser's early checks; with
  ``fix_crcs`` the checksums are recomputed afterwards so the header's field checks are reached.
* ``mutate_fields`` edits a parsed file (sizes, rate, mode, latent shapes, stream bytes, escape
  varints, metadata) and packs it again with valid CRCs, so mutants get past the container into
  the model checks and the entropy decoders.

Seeds are small real files in ``tests/corpus`` (regenerate with ``python tests/fuzzing.py``);
``load_seeds`` re-stamps them with the installed weights' digest so a retrained model does not
turn the whole corpus into shallow model-mismatch errors; files of retired models take part only
when their weights are on ``$NEUROCODEC_WEIGHTS_PATH`` (test_fuzz puts them there).
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import replace
from pathlib import Path

from neurocodec import container
from neurocodec.container import NacFile, Stream

CORPUS = Path(__file__).parent / "corpus"
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x10000, 2**28, 2**31 - 1, 2**32 - 1)


def make_seeds() -> dict[str, bytes]:
    """Small files covering every stream kind: RGB, gray, RGBA with alpha, ICC, escapes."""
    import numpy as np

    import neurocodec
    from neurocodec import codec, io, zoo
    from conftest import photo_like

    rgb = photo_like(32, 40, seed=11)
    alpha = (np.arange(24 * 20) % 7 * 36).astype(np.uint8).reshape(24, 20, 1)
    noise = np.random.default_rng(12).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    icc = io.Picture(photo_like(20, 16, seed=13), icc=b"fake-icc-profile" * 4)
    return {
        "rgb-q20.nac": neurocodec.encode(rgb, quality=20),
        "gray-q90.nac": neurocodec.encode(rgb[:, :, 1], quality=90),
        "rgba-q50.nac": neurocodec.encode(np.concatenate([photo_like(24, 20, seed=14), alpha], axis=2), quality=50),
        "noise-q100.nac": neurocodec.encode(noise, quality=100),
        "icc-q60.nac": codec.encode(icc, 60, zoo.load()).data,
    }


def load_seeds() -> list[bytes]:
    from neurocodec import zoo

    seeds = []
    for path in sorted(CORPUS.glob("*.nac")):
        nac = container.unpack(path.read_bytes())
        if nac.model_id not in zoo.available():
            continue  # a retired model's file whose weights are not on $NEUROCODEC_WEIGHTS_PATH
        seeds.append(container.pack(replace(nac, weights_digest=zoo.load(nac.model_id).digest)))
    return seeds


def fix_crcs(data: bytes) -> bytes:
    """Recompute the header CRC and every stream CRC that the (possibly damaged) header locates."""
    if len(data) < 12:
        return data
    hlen = struct.unpack_from("<H", data, 10)[0]
    end = 12 + hlen
    if end + 4 > len(data):
        return data
    out = bytearray(data)
    # stream table: the last 9*S bytes of the body, S in the byte before it
    for s in range(min(255, hlen // 9), 0, -1):
        if end - 9 * s - 1 >= 12 and out[end - 9 * s - 1] == s:
            pos = end + 4
            for i in range(s):
                entry = end - 9 * s + 9 * i
                length = struct.unpack_from("<I", out, entry + 1)[0]
                if pos + length > len(out):
                    break
                struct.pack_into("<I", out, entry + 5, zlib.crc32(out[pos : pos + length]))
                pos += length
            break
    struct.pack_into("<I", out, end, zlib.crc32(out[8:end]))
    return bytes(out)


def mutate_bytes(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """One to four raw mutations of ``data``; half the time the CRCs are made valid again."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        n = len(b)
        if op == 0 and n:  # bit flips
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(n * 8)
                b[i // 8] ^= 1 << (i % 8)
        elif op == 1 and n:  # random bytes
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(n)] = rng.randrange(256)
        elif op == 2 and n >= 4:  # an interesting integer at any offset, e.g. a length field
            fmt = rng.choice("BHI")
            size = struct.calcsize("<" + fmt)
            value = rng.choice(INTERESTING) & (256**size - 1)
            struct.pack_into("<" + fmt, b, rng.randrange(n - size + 1), value)
        elif op == 3:  # truncation
            del b[rng.randrange(n + 1) :]
        elif op == 4:  # appended bytes
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif op == 5 and n:  # deletion
            i = rng.randrange(n)
            del b[i : i + rng.randint(1, 16)]
        elif op == 6:  # insertion
            i = rng.randrange(n + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 7:  # splice with another seed
            other = rng.choice(seeds)
            i, j = rng.randrange(n + 1), rng.randrange(len(other) + 1)
            b = b[:i] + other[j:]
        elif op == 8 and n:  # duplicate a chunk
            i = rng.randrange(n)
            b[i:i] = b[i : i + rng.randint(1, 64)]
        elif op == 9:  # garbage of any length, sometimes behind a valid signature
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
            b = bytearray((container.SIGNATURE if rng.random() < 0.5 else b"") + junk)
    out = bytes(b)
    return fix_crcs(out) if rng.random() < 0.5 else out


def _mutate_stream(rng: random.Random, data: bytes, seeds_streams: list[bytes]) -> bytes:
    b = bytearray(data)
    op = rng.randrange(7)
    if op == 0 and b:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b) * 8)
            b[i // 8] ^= 1 << (i % 8)
    elif op == 1:
        del b[rng.randrange(len(b) + 1) :]
    elif op == 2:
        b += bytes(rng.randrange(256) for _ in range(rng.choice((1, 3, 4, 8, 64))))
    elif op == 3:
        b = bytearray(rng.randrange(256) for _ in range(rng.choice((0, 4, len(b), 4 * rng.randint(1, 64)))))
    elif op == 4:
        b = bytearray(len(b))
    elif op == 5 and seeds_streams:
        b = bytearray(rng.choice(seeds_streams))
    elif op == 6 and b:
        i = rng.randrange(len(b))
        b[i] = rng.choice((0, 0xFF, 0x80, 0x7F))
    return bytes(b)


def _escape_bytes(rng: random.Random) -> bytes:
    """Escape-stream contents a forger would try: huge, overlong, unterminated, negative."""
    op = rng.randrange(4)
    if op == 0:  # values at the 5-byte limit
        return b"".join(b"\xff\xff\xff\xff\x7f" for _ in range(rng.randint(1, 8)))
    if op == 1:  # an overlong varint
        return b"\xff" * rng.randint(6, 40)
    if op == 2:  # unterminated
        return b"\x80" * rng.randint(1, 4)
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))


def mutate_fields(rng: random.Random, nac: NacFile, seeds: list[NacFile], net_mn: tuple[int, int]) -> bytes:
    """One to three semantic edits of ``nac``, packed with valid CRCs (reaches the decoder)."""
    m, n = net_mn
    f = nac
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(10)
        streams = list(f.streams)
        if op <= 2 and streams:  # damage one stream's bytes
            i = rng.randrange(len(streams))
            kind, data = streams[i]
            pool = [d for s in seeds for k, d in s.streams if k == kind]
            streams[i] = (kind, _mutate_stream(rng, data, pool))
            f = replace(f, streams=tuple(streams))
        elif op == 3:  # another size, latent shapes kept consistent most of the time
            big = rng.random() < 0.2
            w = rng.randint(1, 2**14 if big else 300)
            h = rng.randint(1, 2**14 if big else 300)
            f = replace(f, width=w, height=h)
            if rng.random() < 0.8:
                hp, wp = -(-h // 64) * 64, -(-w // 64) * 64
                f = replace(f, latent_shapes=((m, hp // 16, wp // 16), (n, hp // 64, wp // 64)))
        elif op == 4:
            f = replace(f, rate=rng.choice((0, 1, rng.randrange(2**16), 2**16 - 1)), quality=rng.randint(1, 100))
        elif op == 5:
            f = replace(f, mode=rng.choice(("L", "RGB", "RGBA")))
        elif op == 6:
            shapes = [tuple(rng.choice((1, rng.randrange(1, 2**16))) for _ in range(3)) for _ in range(rng.randint(0, 3))]
            f = replace(f, latent_shapes=tuple(shapes))
        elif op == 7 and streams:  # drop, duplicate or reorder streams
            choice = rng.randrange(3)
            if choice == 0:
                streams.pop(rng.randrange(len(streams)))
            elif choice == 1:
                streams.append(rng.choice(streams))
            else:
                rng.shuffle(streams)
            f = replace(f, streams=tuple(streams))
        elif op == 8:
            kept = [(k, d) for k, d in streams if k != Stream.Y_ESCAPES]
            f = replace(f, streams=tuple(kept + [(Stream.Y_ESCAPES, _escape_bytes(rng))]))
        else:  # metadata near and over its cap, or a foreign model / digest
            choice = rng.randrange(3)
            if choice == 0:
                kind = rng.choice((Stream.ICC, Stream.EXIF))
                size = rng.choice((0, 1, 1000, (1 << 16) + 1, 1 << 18))
                kept = [(k, d) for k, d in streams if k != kind]
                f = replace(f, streams=tuple(kept + [(kind, bytes(size))]))
            elif choice == 1:
                f = replace(f, weights_digest=bytes(rng.randrange(256) for _ in range(8)))
            else:
                f = replace(f, model_id=rng.choice(("photo-hp64", "x", "photo-hp64\u00e9", "../../etc/passwd")))
    return container.pack(f)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    CORPUS.mkdir(exist_ok=True)
    for name, data in make_seeds().items():
        (CORPUS / name).write_bytes(data)
        print(f"{CORPUS / name}: {len(data)} bytes")
