import json

import numpy as np
import pytest
import torch
from PIL import Image

import neurocodec
from neurocodec import zoo
from neurocodec.train.__main__ import main as train_main
from neurocodec.train.export import main as export_main

from conftest import photo_like


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(photo_like(72, 80, seed=i)).save(folder / f"{i}.png")
    return folder


TINY = {"n": 8, "m": 12, "lambdas": [0.01, 0.1]}


def _tiny_train(images, tmp_path, model: dict, steps: int):
    """Train ``model`` (or resume it) to ``steps`` in ``tmp_path/run``; returns (config, run)."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"batch": 2, "crop": 64, "log_every": 1, "holdout_every": 5, "model": model}))
    run = tmp_path / "run"
    train_main(["--config", str(cfg), "--data", str(images), "--out", str(run), "--device", "cpu",
                "--steps", str(steps)])
    return cfg, run


@pytest.mark.parametrize("context", ["none", "checkerboard"])
def test_training_resumes_from_its_checkpoint_and_exports_a_working_model(images, tmp_path, monkeypatch, context):
    _tiny_train(images, tmp_path, {**TINY, "context": context}, steps=2)
    _, run = _tiny_train(images, tmp_path, {**TINY, "context": context}, steps=4)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # resumed at 2, not restarted
    holdout = [r for r in records if "holdout" in r]
    assert [r["step"] for r in holdout] == [2, 4] and len(holdout[-1]["holdout"]) == 2
    assert ("holdout_without_context" in holdout[-1]) == (context != "none")

    dest = tmp_path / "weights"
    export_main([str(run), "--model-id", "tiny-test", "--dest", str(dest)])
    card = json.loads((dest / "tiny-test.json").read_text())
    assert card["training"]["steps"] == 4 and card["lambdas"] == [0.01, 0.1]
    before = sorted((p.name, p.read_bytes()) for p in dest.iterdir())
    for taken in ("tiny-test", zoo.DEFAULT_MODEL, *zoo.retired(), "../tiny", "retired"):
        with pytest.raises(SystemExit) as stop:  # an ID names one set of weights for ever
            export_main([str(run), "--model-id", taken, "--dest", str(dest)])
        assert stop.value.code == 2
    assert sorted((p.name, p.read_bytes()) for p in dest.iterdir()) == before

    monkeypatch.setattr(zoo, "WEIGHTS_DIR", dest)
    zoo.load.cache_clear()
    try:
        img = photo_like(40, 50)
        out = neurocodec.decode(neurocodec.encode(img, model="tiny-test"))
        assert np.asarray(out).shape == img.shape
    finally:
        zoo.load.cache_clear()


def test_tampered_weights_are_refused(images, tmp_path, monkeypatch):
    import shutil

    dest = tmp_path / "weights"
    dest.mkdir()
    for f in zoo.WEIGHTS_DIR.glob(f"{zoo.DEFAULT_MODEL}.*"):
        shutil.copy(f, dest / f.name)
    blob = bytearray((dest / f"{zoo.DEFAULT_MODEL}.safetensors").read_bytes())
    blob[-1] ^= 1
    (dest / f"{zoo.DEFAULT_MODEL}.safetensors").write_bytes(bytes(blob))
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", dest)
    zoo.load.cache_clear()
    try:
        with pytest.raises(neurocodec.NacModelError, match="modified or damaged"):
            neurocodec.encode(photo_like(8, 8))
    finally:
        zoo.load.cache_clear()


TINY_CHECKERBOARD = {**TINY, "context": "checkerboard"}


def _train_and_ship(images, tmp_path, *, steps, model_id):
    """Train TINY_CHECKERBOARD for ``steps`` and export it; returns (config, run, weights)."""
    cfg, run = _tiny_train(images, tmp_path, TINY_CHECKERBOARD, steps)
    dest = tmp_path / "weights"
    export_main([str(run), "--model-id", model_id, "--dest", str(dest)])
    return cfg, run, dest / f"{model_id}.safetensors"


def test_training_resumes_from_shipped_weights_at_their_step_with_their_parameters(images, tmp_path):
    """A run's own snapshot may be gone (fresh machines): training can restart from what shipped."""
    from neurocodec.nets import build
    from neurocodec.nets.hyperprior import HyperpriorConfig
    from neurocodec.train.export import load_trained, trainable_state

    model = TINY_CHECKERBOARD
    cfg, run, shipped = _train_and_ship(images, tmp_path, steps=3, model_id="tiny-shipped")

    state, step = trainable_state(shipped)
    assert step == 3 and not any(k.startswith("tables.") for k in state)
    config = HyperpriorConfig(**{**model, "lambdas": tuple(model["lambdas"])})
    trained, _ = load_trained(run / "portable.safetensors", config)
    fresh = build(config)
    fresh.load_state_dict(state)  # strict: the density of z is back, nothing is missing
    for name, value in trained.state_dict().items():
        if not name.startswith("z_density."):
            assert torch.equal(fresh.state_dict()[name], value), name

    again = tmp_path / "again"
    train_main(["--config", str(cfg), "--data", str(images), "--out", str(again), "--device", "cpu",
                "--steps", "5", "--init", str(shipped)])
    steps = [json.loads(line)["step"] for line in (again / "log.jsonl").read_text().splitlines()]
    assert steps[:2] == [4, 5]


def test_a_snapshot_without_step_or_card_is_refused_with_its_name(tmp_path):
    from safetensors.torch import save_file

    from neurocodec.train.export import trainable_state

    path = tmp_path / "loose.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="loose.safetensors is neither"):
        trainable_state(path)


def test_a_decoder_only_leg_adds_synthesis_blocks_and_trains_nothing_else(images, tmp_path):
    """Residual blocks join a shipped g_s; with ``trainable`` the analysis and entropy side stay
    bit for bit what shipped, so the new model writes the same bitstreams."""
    from neurocodec.nets.hyperprior import HyperpriorConfig
    from neurocodec.train.export import load_trained, trainable_state

    model = TINY_CHECKERBOARD
    _, _, shipped = _train_and_ship(images, tmp_path, steps=2, model_id="tiny-parent")
    parent, _ = trainable_state(shipped)

    leg = tmp_path / "leg.json"
    leg.write_text(json.dumps({"batch": 2, "crop": 64, "log_every": 1, "holdout_every": 5, "lr": 1e-3,
                               "trainable": ["g_s.", "synthesis_blocks."], "blocks_lr_scale": 10.0,
                               "model": {**model, "synthesis_blocks": [3]}}))
    child_run = tmp_path / "child"
    train_main(["--config", str(leg), "--data", str(images), "--out", str(child_run), "--device", "cpu",
                "--steps", "5", "--init", str(shipped)])
    child, step = load_trained(child_run / "portable.safetensors", HyperpriorConfig(**model, synthesis_blocks=(3,)))
    assert step == 5
    state = child.state_dict()
    for name, value in parent.items():
        if name.startswith("z_density."):
            continue
        same = torch.equal(state[name], value.float())
        assert same != name.startswith("g_s."), name  # g_s moved, nothing else did
    assert any(k.startswith("synthesis_blocks.") and v.abs().sum() > 0 for k, v in state.items() if "conv2" in k)


def test_interrupting_the_held_out_evaluation_keeps_the_checkpoint_and_logs_no_figures(images, tmp_path, monkeypatch):
    from neurocodec.train import trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "evaluate", interrupted)
    _, run = _tiny_train(images, tmp_path, TINY, steps=2)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and not any("holdout" in r for r in records)
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 2


def test_ctrl_c_ends_training_after_the_current_step_with_a_checkpoint(images, tmp_path, monkeypatch):
    import os
    import signal

    from neurocodec.train import data

    sample = data.CropSampler.sample
    calls = []

    def sample_then_interrupt(self, n):
        calls.append(n)
        if len(calls) == 2:  # Ctrl-C during the second step
            os.kill(os.getpid(), signal.SIGINT)
        return sample(self, n)

    monkeypatch.setattr(data.CropSampler, "sample", sample_then_interrupt)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN, not Python's handler, in a background job
    _, run = _tiny_train(images, tmp_path, TINY, steps=50)
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 2
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 2] and "holdout" in records[-1]
    assert signal.getsignal(signal.SIGINT) is before  # the handler is given back


def test_smooth_patches_are_flat_or_ramps_and_leave_photo_crops_untouched_when_off(images):
    from neurocodec.train import data

    files = data.image_files(images)
    plain = data.CropSampler(files, 32, torch.device("cpu"), seed=3).sample(6)
    again = data.CropSampler(files, 32, torch.device("cpu"), seed=3, smooth_fraction=0.0).sample(6)
    assert torch.equal(plain, again)  # the option off draws nothing extra: old runs repeat exactly

    gen = torch.Generator().manual_seed(0)
    patches = [data.smooth_patch(32, gen) for _ in range(40)]
    spread = [(p.amax((1, 2)) - p.amin((1, 2))).amax().item() for p in patches]  # per channel
    flat = [p for p, s in zip(patches, spread) if s == 0]
    ramps = [p for p, s in zip(patches, spread) if s > 0]
    assert flat and ramps and all(p.dtype == torch.uint8 and p.shape == (3, 32, 32) for p in patches)
    for p in ramps:  # a linear ramp of at most 48 levels: neighbours differ by at most a level or two
        d = p.int().diff(dim=1).abs().amax().item(), p.int().diff(dim=2).abs().amax().item()
        assert max(d) <= 2 and max(spread) <= 48

    mixed = data.CropSampler(files, 32, torch.device("cpu"), seed=3, smooth_fraction=0.5).sample(40)
    smooth = [(x.amax((1, 2)) - x.amin((1, 2))).amax().item() <= 48.5 / 255 for x in mixed]
    assert 5 < sum(smooth) < 35
    with pytest.raises(ValueError, match="smooth_fraction"):
        data.CropSampler(files, 32, torch.device("cpu"), seed=3, smooth_fraction=1.0)
