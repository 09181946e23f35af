"""Damaged and hostile files against the whole decoder: every one raises a NacError, fast.

test_container.py does the same on a synthetic container; these use a real encoded file, so the
model checks and entropy decoders behind the container are reached too.
"""

import pickle
import shutil
import struct
import time
import zlib
from dataclasses import replace

import pytest
import torch

import neurocodec
from neurocodec import codec, container, zoo
from neurocodec.container import Limits, Stream
from neurocodec.errors import NacError, NacFormatError, NacLimitError, NacModelError

SECOND = 1.0


def _decode_fails_fast(data: bytes, limits: Limits | None = None) -> NacError:
    t = time.perf_counter()
    with pytest.raises(NacError) as info:
        neurocodec.decode(data, limits)
    assert time.perf_counter() - t < SECOND
    return info.value


def _sized(small_nac: bytes, width: int, height: int) -> bytes:
    """The file with another image size and latent shapes that agree with it (valid CRCs)."""
    f = container.unpack(small_nac)
    hp, wp = -(-height // 64) * 64, -(-width // 64) * 64
    (m, _, _), (n, _, _) = f.latent_shapes
    return container.pack(replace(f, width=width, height=height,
                                  latent_shapes=((m, hp // 16, wp // 16), (n, hp // 64, wp // 64))))


def test_every_truncation_of_a_real_file_raises_nac_error_within_1s(small_nac):
    for n in range(len(small_nac)):
        _decode_fails_fast(small_nac[:n])


def test_every_single_bit_flip_of_a_real_file_raises_nac_error_within_1s(small_nac):
    for i in range(len(small_nac) * 8):
        damaged = bytearray(small_nac)
        damaged[i // 8] ^= 1 << (i % 8)
        _decode_fails_fast(bytes(damaged))


def test_crcs_catch_every_single_bit_flip_after_the_prefix(small_nac):
    """Bytes 12.. are the header body, its CRC and the streams: a checksum names each flip."""
    for i in range(12 * 8, len(small_nac) * 8):
        damaged = bytearray(small_nac)
        damaged[i // 8] ^= 1 << (i % 8)
        with pytest.raises(NacFormatError, match="checksum mismatch"):
            container.unpack(bytes(damaged))


def test_empty_input_and_garbage_raise_nac_error():
    for data in (b"", b"\x8b", container.SIGNATURE, container.SIGNATURE + bytes(100), bytes(range(256)) * 4):
        _decode_fails_fast(data)


def test_appended_bytes_are_refused(small_nac):
    for extra in (b"\x00", b"NAC", bytes(4096)):
        err = _decode_fails_fast(small_nac + extra)
        assert f"it has {len(small_nac) + len(extra)} bytes" in str(err)


def test_huge_declared_stream_length_is_refused_before_reading(small_nac):
    f = container.unpack(small_nac)
    hlen = struct.unpack_from("<H", small_nac, 10)[0]
    body = bytearray(small_nac[12 : 12 + hlen])
    first_entry = len(body) - 9 * len(f.streams)
    struct.pack_into("<I", body, first_entry + 1, 2**32 - 1)
    head = small_nac[:12] + bytes(body)
    forged = head + struct.pack("<I", zlib.crc32(head[8:])) + small_nac[16 + hlen :]
    assert "add up to" in str(_decode_fails_fast(forged))


def test_huge_declared_image_is_refused_by_the_memory_limit_before_decoding(small_nac):
    err = _decode_fails_fast(_sized(small_nac, 16384, 16384))
    assert isinstance(err, NacLimitError) and "16384x16384" in str(err) and "memory limit" in str(err)


def test_declared_sizes_over_the_pixel_and_side_limits_are_refused(small_nac):
    err = _decode_fails_fast(_sized(small_nac, 4096, 4096), Limits(max_pixels=2**20))
    assert isinstance(err, NacLimitError) and "16777216 pixels" in str(err)
    err = _decode_fails_fast(_sized(small_nac, 300, 20), Limits(max_side=256))
    assert isinstance(err, NacLimitError) and "300x20" in str(err)


def test_decode_memory_estimate_is_an_upper_bound(rgb):
    """The estimate the memory limit relies on, against the measured peak (Linux: VmHWM)."""
    clear_refs = "/proc/self/clear_refs"
    try:
        with open(clear_refs, "w") as f:
            f.write("5")  # reset the peak resident size to the current one
    except OSError:
        pytest.skip("peak RSS cannot be reset on this system")
    from conftest import photo_like

    data = neurocodec.encode(photo_like(512, 640, seed=8), quality=75)

    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    with open(clear_refs, "w") as f:
        f.write("5")
    before = kib("VmRSS:")
    codec.decode(data)
    assert kib("VmHWM:") - before <= codec.decode_memory_estimate(640, 512, zoo.load().net.config.m)


def test_hostile_escape_streams_raise_format_errors(small_nac):
    f = container.unpack(small_nac)
    others = tuple((k, d) for k, d in f.streams if k != Stream.Y_ESCAPES)
    for escapes in (b"\xff" * 6, b"\x80", b"\xff\xff\xff\xff\x7f" * 100, bytes(50)):
        forged = container.pack(replace(f, streams=others + ((Stream.Y_ESCAPES, escapes),)))
        assert isinstance(_decode_fails_fast(forged), NacFormatError)


def test_model_id_from_a_file_is_never_used_as_a_path(small_nac):
    f = container.unpack(small_nac)
    m = zoo.DEFAULT_MODEL
    for mid in (f"../weights/{m}", "/etc/passwd", f"{m}/../{m}", f"..\\{m}", "retired", ".json"):
        err = _decode_fails_fast(container.pack(replace(f, model_id=mid)))
        assert isinstance(err, NacModelError) and "unknown model" in str(err)


@pytest.fixture
def fresh_zoo(monkeypatch):
    zoo.load.cache_clear()
    yield monkeypatch
    zoo.load.cache_clear()


def test_tampered_weight_file_is_refused_with_a_clear_message(fresh_zoo, tmp_path):
    m = zoo.DEFAULT_MODEL
    for name in (f"{m}.json", f"{m}.safetensors"):
        shutil.copy(zoo.WEIGHTS_DIR / name, tmp_path / name)
    blob = bytearray((tmp_path / f"{m}.safetensors").read_bytes())
    blob[-100] ^= 0x01
    (tmp_path / f"{m}.safetensors").write_bytes(bytes(blob))
    fresh_zoo.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(NacModelError, match=f"{m}.safetensors has SHA-256 .* modified or damaged"):
        zoo.load(m)


def test_weights_load_and_decode_without_pickle(fresh_zoo, small_nac):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        fresh_zoo.setattr(module, name, refuse)
    assert neurocodec.decode(small_nac).size == (40, 32)


def test_pillow_decompression_bomb_on_encode_is_a_value_error(tmp_path, monkeypatch):
    from PIL import Image

    from conftest import photo_like

    path = tmp_path / "big.png"
    Image.fromarray(photo_like(40, 56)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2240 pixels is over twice this
    with pytest.raises(ValueError, match="cannot read"):
        neurocodec.encode(path)


def test_escape_values_that_overflow_the_synthesis_still_decode(monkeypatch, retired_weights):
    """Well-formed escapes of -2^34 are legal varints; they push g_s to NaN, and decoding must
    still finish with an image (codec._to_pixels maps NaN to 0 before the uint8 cast, which
    would be undefined in C++; on x86 the cast happens to give 0 too, so that is not testable).
    Only the retired photo-hp64's corpus files have escapes, so their weights go on the path."""
    import fuzzing

    f = next(u for u in map(container.unpack, fuzzing.load_seeds()) if u.stream(Stream.Y_ESCAPES))
    count = sum(b < 0x80 for b in f.stream(Stream.Y_ESCAPES))  # a varint ends at a byte below 0x80
    others = tuple((k, d) for k, d in f.streams if k != Stream.Y_ESCAPES)
    forged = container.pack(replace(f, streams=others + ((Stream.Y_ESCAPES, b"\xff\xff\xff\xff\x7f" * count),)))
    to_pixels, nans = codec._to_pixels, []

    def spy(x, *args):
        nans.append(int(torch.isnan(x).sum()))
        return to_pixels(x, *args)

    monkeypatch.setattr(codec, "_to_pixels", spy)
    assert codec.decode(forged).pixels.shape == (f.height, f.width, 3)
    assert nans[0] > 0
