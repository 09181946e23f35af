import numpy as np
import pytest

from neurocodec.entropy import FactorizedCoder, GaussianCoder
from neurocodec.errors import NacFormatError
from neurocodec.nets.priors import gaussian_tables, scale_table


@pytest.fixture(scope="module")
def gaussian() -> GaussianCoder:
    scales = scale_table()
    radii, pmfs = gaussian_tables(scales)
    return GaussianCoder(scales, radii, [pmfs[k, : 2 * radii[k] + 2] for k in range(len(scales))])


def test_gaussian_round_trip_including_escapes(gaussian):
    rng = np.random.default_rng(1)
    scales = np.exp(rng.uniform(-2.5, 4, size=(4, 30, 20)))
    residuals = np.round(rng.normal(0, scales * 1.5)).astype(np.int64)
    residuals[0, 0, :4] = [10**6, -(10**6), 2**30, -(2**30)]
    index = gaussian.scale_index(scales)
    data, escapes = gaussian.encode(residuals, index)
    assert len(escapes) > 0
    np.testing.assert_array_equal(gaussian.decode(data, escapes, index), residuals)


def test_gaussian_rate_is_close_to_the_entropy(gaussian):
    rng = np.random.default_rng(2)
    scale = np.full(50_000, 3.0)
    residuals = np.round(rng.normal(0, 3.0, scale.shape)).astype(np.int64)
    data, _ = gaussian.encode(residuals, gaussian.scale_index(scale))
    # a unit-bin discretized N(0, 3) has an entropy of 0.5 * log2(2 pi e 9) = 3.63 bits
    assert 3.6 < 8 * len(data) / scale.size < 3.7


def test_scale_index_picks_the_smallest_table_scale_not_below(gaussian):
    s = gaussian.scales
    idx = gaussian.scale_index(np.array([0.0, s[0], s[5] * 1.0001, 1e9]))
    assert idx.tolist() == [0, 0, 6, len(s) - 1]


def test_factorized_round_trip_and_clamping():
    offsets = np.array([-3, -10])
    pmfs = [np.array([0.1, 0.2, 0.4, 0.2, 0.1]), np.full(21, 1 / 21)]
    coder = FactorizedCoder(offsets, pmfs)
    z = np.array([[[-3, 1], [0, 99]], [[-10, 10], [0, -50]]])
    clamped = coder.clamp(z)
    assert clamped[0, 1, 1] == 1 and clamped[1, 1, 1] == -10
    data = coder.encode(clamped)
    np.testing.assert_array_equal(coder.decode(data, clamped.shape), clamped)


def test_damaged_streams_raise_format_errors(gaussian):
    index = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(NacFormatError, match="multiple of 4"):
        gaussian.decode(b"abc", b"", index)
    with pytest.raises(NacFormatError):
        gaussian.decode(b"\x00\x00\x00\x00", b"", index)
    residuals = np.full((2, 3), 500)
    data, escapes = gaussian.encode(residuals, index)
    with pytest.raises(NacFormatError, match="escape stream"):
        gaussian.decode(data, escapes[:-1], index)
    with pytest.raises(NacFormatError, match="left over"):
        gaussian.decode(data, escapes + b"\x01", index)
