"""Encoding to a bpp or PSNR target instead of a quality."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import neurocodec
from neurocodec import codec, io, metrics, zoo
from neurocodec.targets import TargetWarning, encode_to_target


@pytest.fixture
def pic(rgb):
    return io.load(rgb)


def _bpp(data: bytes, pic) -> float:
    return 8 * len(data) / (pic.width * pic.height)


def test_bpp_target_lands_within_five_percent(pic):
    model = zoo.load()
    goal = _bpp(codec.encode(pic, 60, model).data, pic) * 0.93  # between two qualities
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hit = encode_to_target(pic, model, target_bpp=goal)
    assert hit.met and abs(hit.bpp - goal) <= 0.05 * goal
    assert hit.bpp == _bpp(hit.encoded.data, pic)


def test_psnr_target_lands_within_two_tenths_of_a_db(pic):
    model = zoo.load()
    enc = codec.encode(pic, 40, model, reconstruct=True)
    goal = metrics.psnr(pic.color, enc.reconstruction.color) + 0.3
    hit = encode_to_target(pic, model, target_psnr=goal)
    assert hit.met and abs(hit.psnr - goal) <= 0.2
    assert metrics.psnr(pic.color, np.asarray(neurocodec.decode(hit.encoded.data))) == pytest.approx(hit.psnr)


def test_unreachable_bpp_target_warns_and_gives_the_smallest_file(pic):
    with pytest.warns(TargetWarning, match="smallest file"):
        hit = encode_to_target(pic, zoo.load(), target_bpp=0.001)
    assert not hit.met and hit.encoded.data == codec.encode(pic, 1, zoo.load(), rate=0).data


def test_targeted_file_records_the_nearest_quality_in_its_header(pic):
    with pytest.warns(TargetWarning, match="highest PSNR"):
        data = neurocodec.encode(pic.pixels, target_psnr=99.0)
    assert neurocodec.read_info(data)["quality"] == 100


def test_api_refuses_two_targets_at_once(rgb):
    with pytest.raises(ValueError, match="exactly one"):
        neurocodec.encode(rgb, target_bpp=0.5, target_psnr=30.0)
