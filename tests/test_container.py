import struct
import zlib

import pytest

from neurocodec import container
from neurocodec.container import Limits, NacFile, Stream
from neurocodec.errors import NacError, NacFormatError, NacLimitError


def make(**changes) -> NacFile:
    fields = dict(
        model_id="photo-hp64", weights_digest=bytes(range(8)), quality=75, rate=300, width=17, height=33,
        mode="RGB", latent_shapes=((192, 4, 4), (128, 1, 1)),
        streams=((Stream.Z, b"zz"), (Stream.Y, b"yyyy"), (Stream.Y_ESCAPES, b"")),
    )
    fields.update(changes)
    return NacFile(**fields)


def test_pack_then_unpack_returns_the_same_fields():
    f = make()
    assert container.unpack(container.pack(f)) == f


def test_file_starts_with_png_style_signature_and_version():
    data = container.pack(make())
    assert data[:8] == b"\x8bNAC\r\n\x1a\n"
    assert data[8:10] == bytes([1, 0])


def test_every_truncation_raises_nac_error():
    data = container.pack(make())
    for n in range(len(data)):
        with pytest.raises(NacError):
            container.unpack(data[:n])


def test_every_single_bit_flip_is_detected():
    data = container.pack(make())
    for i in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[i // 8] ^= 1 << (i % 8)
        with pytest.raises(NacError):
            container.unpack(bytes(damaged))


def test_appended_bytes_are_rejected_with_both_sizes_named():
    data = container.pack(make())
    with pytest.raises(NacFormatError, match=f"{len(data)}-byte file, but it has {len(data) + 3}"):
        container.unpack(data + b"abc")


def test_bad_signature_names_what_was_found():
    data = bytearray(container.pack(make()))
    data[1:4] = b"PNG"
    with pytest.raises(NacFormatError, match="signature"):
        container.unpack(bytes(data))


def test_unknown_major_version_is_refused_naming_supported_version():
    data = bytearray(container.pack(make()))
    data[8] = 7
    with pytest.raises(NacFormatError, match="version 7.0.*supports 1.x"):
        container.unpack(bytes(data))


def _reheader(data: bytes, mutate) -> bytes:
    """Rewrite header fields and fix the header CRC, as a forger would."""
    hlen = struct.unpack_from("<H", data, 10)[0]
    body = bytearray(data[12 : 12 + hlen])
    mutate(body)
    head = data[:12] + bytes(body)
    return head + struct.pack("<I", zlib.crc32(head[8:])) + data[12 + hlen + 4 :]


def test_huge_declared_dimensions_are_refused_before_allocation():
    data = container.pack(make())
    mid_len = data[12]
    off = 1 + mid_len + 8 + 1 + 2  # model id, digest, quality, rate -> width

    def huge(body):
        struct.pack_into("<II", body, off, 60000, 60000)

    with pytest.raises(NacLimitError, match="60000x60000"):
        container.unpack(_reheader(data, huge))


def test_pixel_limit_is_configurable():
    data = container.pack(make())
    with pytest.raises(NacLimitError, match="561 pixels"):
        container.unpack(data, Limits(max_pixels=500))


def test_stream_length_that_disagrees_with_file_size_is_refused():
    f = make()
    data = container.pack(f)

    def longer(body):
        # the Y stream entry is the 2nd of 3 entries at the end of the body (9 bytes each)
        pos = len(body) - 2 * 9 + 1
        length = struct.unpack_from("<I", body, pos)[0]
        struct.pack_into("<I", body, pos, length + 1000)

    with pytest.raises(NacFormatError, match="add up to"):
        container.unpack(_reheader(data, longer))


def test_oversized_metadata_is_refused():
    f = make(streams=((Stream.Z, b"z"), (Stream.ICC, b"x" * 100)))
    limits = Limits(max_metadata_bytes={Stream.ICC: 10})
    with pytest.raises(NacLimitError, match="ICC metadata is 100 bytes"):
        container.unpack(container.pack(f), limits)


def test_empty_and_garbage_inputs_raise_nac_error():
    for data in (b"", b"\x00", b"hello world, this is not a codec file at all", bytes(1000)):
        with pytest.raises(NacError):
            container.unpack(data)


def test_nac_error_is_a_value_error():
    assert issubclass(NacError, ValueError)
