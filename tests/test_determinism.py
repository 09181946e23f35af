"""A file must decode to the same symbols on every machine: the entropy parameters are exact.

These tests vary what a different machine would vary (thread count, batch and tile layout,
summation order, float precision of the synthesis) and check what must not move.
"""

import copy
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import neurocodec
from neurocodec import codec, container, zoo
from neurocodec.container import Stream
from neurocodec.nets import checkerboard, hyperprior
from neurocodec.nets.checkerboard import CheckerboardHyperprior
from neurocodec.nets.hyperprior import EXACT_SUM_LIMIT, MeanScaleHyperprior

from conftest import photo_like


@pytest.fixture(scope="module")
def model():
    return zoo.load()


def _z_symbols(model, img: np.ndarray, quality: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer z a real encode writes, and its level, read back from the file."""
    nac = container.unpack(neurocodec.encode(img, quality=quality))
    z = model.z_coder.decode(nac.stream(Stream.Z), nac.latent_shapes[1])
    return torch.from_numpy(z)[None], torch.tensor([nac.rate / codec.RATE_SCALE])


def test_bytes_do_not_depend_on_the_thread_count_and_pixels_by_at_most_one_level():
    """The parse is exact by construction; g_s runs in float32 on oneDNN kernels, whose reductions
    may split across threads: on 2026-11-25 both photo-cb64 and photo-cb64-m144 decoded 2-3 of
    73,728 values one level apart at 2 or 4 threads (earlier sessions saw no difference)."""
    img = photo_like(128, 192, seed=5)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            data = neurocodec.encode(img, quality=70)
            results.append((data, np.asarray(neurocodec.decode(data))))
    finally:
        torch.set_num_threads(before)
    for data, pixels in results[1:]:
        assert data == results[0][0]
        assert np.abs(pixels.astype(int) - results[0][1].astype(int)).max() <= 1


def test_entropy_parameters_of_a_batch_equal_each_image_alone(model):
    z1, level = _z_symbols(model, photo_like(128, 128, seed=1), 40)
    z2, _ = _z_symbols(model, photo_like(128, 128, seed=2), 40)
    scales, means = model.net.entropy_parameters(torch.cat([z1, z2]), level.repeat(2))
    for i, z in enumerate((z1, z2)):
        s, m = model.net.entropy_parameters(z, level)
        assert torch.equal(scales[i : i + 1], s) and torch.equal(means[i : i + 1], m)


def test_entropy_parameters_of_a_tile_equal_the_full_image_inside_the_tile(model):
    z, level = _z_symbols(model, photo_like(448, 448, seed=3), 60)  # z is 7x7
    full_s, full_m = model.net.entropy_parameters(z, level)
    tile_s, tile_m = model.net.entropy_parameters(z[:, :, 1:6, 2:7], level)
    # h_s upsamples by 4; two z positions of margin cover its receptive field
    inner = (slice(None), slice(None), slice(8, 12), slice(8, 12))
    full_inner = (slice(None), slice(None), slice(12, 16), slice(16, 20))
    assert torch.equal(tile_s[inner], full_s[full_inner])
    assert torch.equal(tile_m[inner], full_m[full_inner])


_exact_conv = hyperprior._exact_conv


def _reordered_conv(layer, a, w, b):
    """The same convolution summed in another order: input channels reversed, in two halves."""
    a, w = a.flip(1), w.flip(1 if isinstance(layer, torch.nn.Conv2d) else 0)
    half = a.shape[1] // 2
    if isinstance(layer, torch.nn.ConvTranspose2d):
        parts = [(a[:, :half], w[:half]), (a[:, half:], w[half:])]
    else:
        parts = [(a[:, :half], w[:, :half]), (a[:, half:], w[:, half:])]
    first = _exact_conv(layer, parts[0][0], parts[0][1], None)
    return _exact_conv(layer, parts[1][0], parts[1][1], b) + first


def test_entropy_parameters_do_not_depend_on_summation_order(model, monkeypatch):
    z, level = _z_symbols(model, photo_like(192, 256, seed=4), 80)
    scales, means = model.net.entropy_parameters(z, level)
    if isinstance(model.net, CheckerboardHyperprior):
        y_hat = torch.where(checkerboard.anchor_mask(*means.shape[2:]), means.round(), 0.0)
        context = model.net.context_parameters(scales, means, y_hat)
    monkeypatch.setattr(hyperprior, "_exact_conv", _reordered_conv)
    s2, m2 = model.net.entropy_parameters(z, level)
    assert torch.equal(scales, s2) and torch.equal(means, m2)
    if isinstance(model.net, CheckerboardHyperprior):
        assert all(torch.equal(a, b) for a, b in zip(context, model.net.context_parameters(scales, means, y_hat)))


def test_shipped_weights_keep_every_hyper_synthesis_sum_exact(model):
    assert model.net.fixed_point_bound() < EXACT_SUM_LIMIT


def test_weights_whose_sums_could_be_inexact_are_detected(model):
    net = copy.deepcopy(model.net)
    with torch.no_grad():
        net.h_s[-1].bias[0] = 2.0**34  # 2^54 on the 2^-20 grid
    assert net.fixed_point_bound() >= EXACT_SUM_LIMIT


def test_scale_index_is_chosen_by_exact_comparison_with_the_table(model):
    table = model.y_coder.scales
    k = np.arange(len(table))
    np.testing.assert_array_equal(model.y_coder.scale_index(table), k)
    above = np.nextafter(table[:-1], np.inf)
    np.testing.assert_array_equal(model.y_coder.scale_index(above), k[1:])
    below = np.nextafter(table, -np.inf)
    np.testing.assert_array_equal(model.y_coder.scale_index(below), k)
    assert model.y_coder.scale_index(np.array([-5.0, 1e300]))[0] == 0
    assert model.y_coder.scale_index(np.array([1e300]))[0] == len(table) - 1


def test_float64_synthesis_moves_pixels_by_at_most_one_level(model, monkeypatch):
    """g_s is float and not exact; swapping its float32 kernels for float64 must stay within rounding."""
    data = neurocodec.encode(photo_like(128, 128, seed=6), quality=75)
    pic32 = codec.decode(data)
    net64 = copy.deepcopy(model.net).double()
    net64.synthesis = lambda y_hat, level: MeanScaleHyperprior.synthesis(net64, y_hat.double(), level.double())
    m64 = dataclasses.replace(model, net=net64)  # a post-filter follows the net's float64 (InferenceTransforms)
    monkeypatch.setattr(codec, "load", lambda *_: m64)
    pic64 = codec.decode(data)
    diff = np.abs(pic32.pixels.astype(int) - pic64.pixels.astype(int))
    assert diff.max() <= 1


GOLDEN = Path(__file__).parent / "corpus" / "golden.json"


def symbol_digest(data: bytes) -> str:
    """SHA-256 over everything the parse depends on: z, the exact means, table indices, residuals
    (for context models: z and the exact y_hat, which is residuals plus means of both passes)."""
    nac = container.unpack(data)
    model = zoo.load(nac.model_id)
    z = model.z_coder.decode(nac.stream(Stream.Z), nac.latent_shapes[1])
    level = torch.tensor([nac.rate / codec.RATE_SCALE])
    scales, means = model.net.entropy_parameters(torch.from_numpy(z)[None], level)
    h = hashlib.sha256()
    if isinstance(model.net, CheckerboardHyperprior):
        arrays = (z.astype("<i8"), codec._decode_y(model, nac, scales, means).numpy().astype("<f8"))
    else:
        index = model.y_coder.scale_index(scales[0].numpy())
        residual = model.y_coder.decode(nac.stream(Stream.Y), nac.stream(Stream.Y_ESCAPES), index)
        arrays = (z.astype("<i8"), means.numpy().astype("<f8"), index.astype("<i8"), residual.astype("<i8"))
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()


def _golden_files(models: set[str]) -> list[tuple[str, bytes, str]]:
    golden = json.loads(GOLDEN.read_text())
    out = []
    for name, digest in golden["symbols"].items():
        data = (GOLDEN.parent / name).read_bytes()
        model_id = container.unpack(data).model_id
        if model_id in models and golden["weights"][model_id] == zoo.card(model_id)["sha256"]:
            out.append((name, data, digest))
    return out


def test_corpus_files_parse_to_the_recorded_symbols():
    """Golden symbols: a new platform, torch or constriction that parsed any old file differently
    (e.g. other quantized probabilities) fails here instead of silently corrupting images."""
    files = _golden_files(set(zoo.shipped()))
    assert files, "no corpus file matches the shipped weights; regenerate tests/corpus/golden.json"
    for name, data, digest in files:
        assert symbol_digest(data) == digest, name


def test_files_of_retired_models_still_parse_to_their_symbols_with_the_retired_weights(retired_weights):
    files = _golden_files(retired_weights)
    assert {container.unpack(d).model_id for _, d, _ in files} == retired_weights, "a retired model lost its files"
    for name, data, digest in files:
        assert symbol_digest(data) == digest, name


if __name__ == "__main__":  # python tests/test_determinism.py  -> rewrites tests/corpus/golden.json
    # Files of retired models keep their record: their symbols were fixed when they were made.
    old = json.loads(GOLDEN.read_text())
    record: dict = {"weights": {}, "symbols": {}}
    for p in sorted(GOLDEN.parent.glob("*.nac")):
        model_id = container.unpack(p.read_bytes()).model_id
        if model_id in zoo.retired():
            record["weights"][model_id] = old["weights"][model_id]
            record["symbols"][p.name] = old["symbols"][p.name]
        else:
            record["weights"][model_id] = zoo.card(model_id)["sha256"]
            record["symbols"][p.name] = symbol_digest(p.read_bytes())
    record["weights"] = dict(sorted(record["weights"].items()))
    GOLDEN.write_text(json.dumps(record, indent=2) + "\n")
    print(GOLDEN.read_text())
