"""Post-filters and the derived models that carry them: the filter network, how a derived model
loads on top of its base, what it changes in files (the header only) and in pixels, and the
trainer that makes one."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import neurocodec
from neurocodec import codec, container, io, metrics, zoo
from neurocodec.errors import NacModelError
from neurocodec.nets import inference
from neurocodec.nets.postfilter import PostFilter, PostFilterConfig

from conftest import photo_like

BASE = zoo.DEFAULT_MODEL if zoo.load().postfilter is None else zoo.load().card["base"]


def random_filter(seed: int = 0, channels: int = 8, depth: int = 2) -> PostFilter:
    torch.manual_seed(seed)
    net = PostFilter(PostFilterConfig(channels, depth, zoo.load(BASE).levels))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


def write_derived(folder, model_id: str, net: PostFilter, base: str = BASE, base_sha: str | None = None) -> None:
    folder.mkdir(exist_ok=True)
    meta = {"family": "postfilter", "base": base, "base_sha256": base_sha or zoo.card(BASE)["sha256"],
            "channels": net.config.channels, "depth": net.config.depth, "levels": net.config.levels}
    path = folder / f"{model_id}.safetensors"
    save_file({k: v.half() for k, v in net.state_dict().items()}, str(path), {"config": json.dumps(meta)})
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / f"{model_id}.json").write_text(json.dumps({"model_id": model_id, "sha256": sha, "config": meta}))


@pytest.fixture
def derived(tmp_path, monkeypatch):
    """A derived model 'photo-test-pf' on $NEUROCODEC_WEIGHTS_PATH, with a random filter on the base."""
    write_derived(tmp_path / "w", "photo-test-pf", random_filter())
    monkeypatch.setenv(zoo.PATH_VARIABLE, str(tmp_path / "w"))
    zoo.load.cache_clear()
    yield zoo.load("photo-test-pf")
    zoo.load.cache_clear()


def test_an_untrained_post_filter_is_the_identity():
    net = PostFilter(PostFilterConfig(8, 2, 13))
    x = torch.rand(2, 3, 32, 48)
    assert torch.equal(net(x, torch.tensor([0.0, 7.5])), x)


def test_a_post_filter_depends_on_pixels_within_its_reach_only():
    net = random_filter(depth=3)
    x = torch.rand(1, 3, 64, 64)
    y = x.clone()
    y[0, :, 32, 32] += 0.5
    changed = (net(x, torch.tensor([3.0])) - net(y, torch.tensor([3.0]))).abs().sum(dim=(0, 1)) > 0
    rows, cols = torch.nonzero(changed, as_tuple=True)
    reach = max((rows - 32).abs().max().item(), (cols - 32).abs().max().item())
    assert 0 < reach <= net.reach()
    assert reach > net.reach() - 3  # the bound is tight, so the decoder's tile halo is not oversized


def test_a_post_filter_sees_the_rate_level():
    net = random_filter()
    x = torch.rand(1, 3, 32, 32)
    assert not torch.equal(net(x, torch.tensor([0.0])), net(x, torch.tensor([12.0])))


def test_a_derived_model_shares_its_base_s_network_and_coders(derived):
    base = zoo.load(BASE)
    assert derived.net is base.net and derived.y_coder is base.y_coder and derived.z_coder is base.z_coder
    assert derived.digest != base.digest and derived.postfilter is not None


def test_a_derived_model_writes_its_base_s_bitstream_under_its_own_id(derived):
    pic = io.load(photo_like(96, 128, seed=3))
    ours = container.unpack(codec.encode(pic, 40, derived).data)
    theirs = container.unpack(codec.encode(pic, 40, zoo.load(BASE)).data)
    assert ours.model_id == "photo-test-pf" and ours.weights_digest == derived.digest
    assert ours.streams == theirs.streams and ours.rate == theirs.rate


def test_a_derived_model_s_decoder_filters_and_returns_the_encoder_s_reconstruction(derived):
    img = photo_like(96, 128, seed=4)
    enc = codec.encode(io.load(img), 40, derived, reconstruct=True)
    base = codec.encode(io.load(img), 40, zoo.load(BASE), reconstruct=True)
    decoded = np.asarray(neurocodec.decode(enc.data))
    assert np.array_equal(decoded, enc.reconstruction.pixels)
    assert not np.array_equal(decoded, base.reconstruction.pixels)


def test_a_tiled_decode_with_a_post_filter_has_no_seams(derived):
    img = photo_like(200, 300, seed=7)
    whole = codec.encode(io.load(img), 70, derived, reconstruct=True, tile=None).reconstruction.pixels
    tiled = codec.encode(io.load(img), 70, derived, reconstruct=True, tile=3).reconstruction.pixels
    diff = np.abs(tiled.astype(int) - whole.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001  # float summation order, nothing more


def test_the_filter_in_bfloat16_moves_decoded_pixels_by_at_most_one_level(monkeypatch):
    """Where bfloat16 is fast the decoder runs the filter's convolutions in it (FILTER_BFLOAT16);
    on three Kodak images that moved up to 7 % of the 8-bit values by one level, the PSNR by at most 0.0012 dB."""
    img = photo_like(128, 192, seed=11)
    data = neurocodec.encode(img, quality=20)  # low rates: the filter's largest corrections
    decoded = {}
    for bfloat16 in (False, True):
        monkeypatch.setattr(inference, "FILTER_BFLOAT16", bfloat16)
        decoded[bfloat16] = np.asarray(neurocodec.decode(data))
    diff = np.abs(decoded[True].astype(int) - decoded[False].astype(int))
    assert 0 < diff.max() <= 1
    assert abs(metrics.psnr(img, decoded[True]) - metrics.psnr(img, decoded[False])) < 0.01


@pytest.mark.parametrize("bfloat16", [False, True])
def test_the_decoder_s_fused_filter_computes_the_unfused_filter_s_correction_bit_for_bit(monkeypatch, bfloat16):
    """Without autograd the decoder runs each convolution and its ReLU as one oneDNN call
    (inference.CONV_RELU) where torch has it; where it does not, the plain layers give the same."""
    monkeypatch.setattr(inference, "FILTER_BFLOAT16", bfloat16)
    tf = codec.model_transforms(zoo.load(), "cpu")
    x, level = torch.rand(1, 3, 64, 96).contiguous(memory_format=torch.channels_last), torch.tensor([4.5])
    with torch.no_grad():
        fused = tf.filter_correction(x, level)
        monkeypatch.setattr(inference, "CONV_RELU", None)
        plain = tf.filter_correction(x, level)
    assert fused.dtype == plain.dtype == (torch.bfloat16 if bfloat16 else torch.float32)
    assert torch.equal(fused, plain) and plain.abs().max() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        assert torch.equal(tf.postfilter.residual(x, level), plain)


def test_the_learning_rate_warms_up_linearly_then_decays_to_five_percent():
    from neurocodec.train import postfilter as trainer

    cfg = trainer.PostFilterTrainConfig(data="d", out="o", lr=1e-3, steps=1000, warmup=100)
    assert trainer.learning_rate(cfg, 0) == pytest.approx(1e-5, rel=0.01)
    assert trainer.learning_rate(cfg, 49) == pytest.approx(0.5e-3, rel=0.01)
    assert trainer.learning_rate(cfg, 99) == pytest.approx(0.977e-3, rel=0.001)  # cosine has begun
    assert trainer.learning_rate(cfg, 500) == pytest.approx(0.525e-3)
    assert trainer.learning_rate(cfg, 1000) == pytest.approx(0.05e-3)
    assert trainer.learning_rate(dataclasses.replace(cfg, warmup=0), 0) == pytest.approx(1e-3)


def test_the_log_mse_loss_is_the_mean_of_each_window_s_log_mse():
    from neurocodec.train import postfilter as trainer

    ref = torch.zeros(2, 3, 4, 4)
    out = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.001)])
    expected = (np.log(0.1**2) + np.log(0.001**2)) / 2
    assert trainer.LOSSES["log-mse"](out, ref).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="log-mse"):
        trainer.PostFilterTrainConfig(data="d", out="o", loss="l1")


@pytest.mark.parametrize("base,base_sha,error", [
    (BASE, "0" * 64, "trained on other weights"),  # the base is installed, with other weights
    ("photo-nowhere", None, "photo-nowhere"),  # the base is not installed at all
])
def test_a_derived_model_loads_only_on_the_exact_base_it_was_trained_on(tmp_path, monkeypatch, base, base_sha, error):
    write_derived(tmp_path / "w", "photo-test-pf", random_filter(), base=base, base_sha=base_sha)
    monkeypatch.setenv(zoo.PATH_VARIABLE, str(tmp_path / "w"))
    zoo.load.cache_clear()
    with pytest.raises(NacModelError, match=error):
        zoo.load("photo-test-pf")
    zoo.load.cache_clear()

@pytest.mark.parametrize("channels, depth", [(8, 4), (12, 2), (12, 3)], ids=["deeper", "wider", "both"])
def test_a_grown_filter_computes_what_the_smaller_one_did_and_its_new_channels_learn(channels, depth):
    small = random_filter(depth=2)
    big = PostFilter(PostFilterConfig(channels, depth, small.config.levels)).eval()
    big.load_smaller(small.state_dict())
    x, level = torch.rand(1, 3, 32, 32), torch.tensor([4.0])
    assert torch.allclose(big(x, level), small(x, level), atol=1e-6)
    assert not torch.allclose(big(x, level), x)  # the filter still does something
    (big(x, level) - x).square().sum().backward()
    assert big.out.weight.grad.abs().sum() > 0
    if channels > 8:  # what reads a new channel starts at zero, with a gradient to leave it
        assert big.out.weight[:, 8:].abs().sum() == 0 and big.out.weight.grad[:, 8:].abs().sum() > 0


@pytest.mark.parametrize("channels, depth", [(16, 2), (8, 1)], ids=["wider-than-target", "deeper-than-target"])
def test_growing_refuses_a_filter_that_does_not_fit(channels, depth):
    with pytest.raises(ValueError, match="does not fit"):
        PostFilter(PostFilterConfig(8, depth, 13)).load_smaller(random_filter(channels=channels, depth=2).state_dict())


def test_the_trainer_resumes_and_its_export_loads_as_a_derived_model(tmp_path, monkeypatch):
    from neurocodec.train import postfilter as trainer

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):  # index 3 validates
        Image.fromarray(photo_like(80, 96, seed=i)).save(data / f"img{i}.png")
    cfg = dict(data=str(data), out=str(tmp_path / "run"), base=BASE, channels=4, depth=1, crops_per_file=1,
               rates_per_crop=1, pair_size=64, window=32, batch=2, eval_every=2, loss="log-mse", bfloat16=True, warmup=2)
    trainer.train(trainer.PostFilterTrainConfig(**cfg, steps=2))
    trainer.train(trainer.PostFilterTrainConfig(**cfg, steps=4))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    weights = tmp_path / "w"
    weights.mkdir()
    trainer.export(tmp_path / "run", "photo-test-pf", weights)
    monkeypatch.setenv(zoo.PATH_VARIABLE, str(weights))
    zoo.load.cache_clear()
    model = zoo.load("photo-test-pf")
    assert model.card["training"]["steps"] == 4 and model.card["base"] == BASE
    img = photo_like(64, 64, seed=9)
    assert metrics.psnr(img, np.asarray(neurocodec.decode(neurocodec.encode(img, quality=50, model="photo-test-pf")))) > 20
    # a new run can start from exported weights (a shipped filter): with no steps, it exports them unchanged
    trainer.train(trainer.PostFilterTrainConfig(**{**cfg, "out": str(tmp_path / "run2")}, steps=0,
                                                init=str(weights / "photo-test-pf.safetensors")))
    trainer.export(tmp_path / "run2", "photo-test-pf2", weights)
    a, b = (load_file(str(weights / f"{m}.safetensors")) for m in ("photo-test-pf", "photo-test-pf2"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    zoo.load.cache_clear()


def test_the_encoder_s_search_scores_the_filtered_output(derived):
    """Effort 1 descends the cost of what the decoder shows, which for a derived model is the
    filter's output: its latents differ from the base model's search."""
    pic = io.load(photo_like(64, 64, seed=5))
    ours = container.unpack(codec.encode(pic, 40, derived, effort=1).data)
    theirs = container.unpack(codec.encode(pic, 40, zoo.load(BASE), effort=1).data)
    assert ours.streams != theirs.streams


def test_a_post_filter_is_never_exported_under_a_shipped_id(tmp_path):
    from neurocodec.train import postfilter as trainer

    with pytest.raises(ValueError, match="shipped"):
        trainer.export(tmp_path, zoo.DEFAULT_MODEL, tmp_path)
