"""``python -m neurocodec.train.postfilter``: train a post-filter for a shipped photo model.

The base model stays frozen, so the filter learns from pairs (what the decoder produces, the
original) that are computed once: random 256x256 crops of the training split of photos-train,
each coded at a few random rates exactly as ``neurocodec.encode`` codes it at effort 0 (the
same rounding, the same context passes), kept as g_s's float output. The held-out split
(every 16th file) is never read; the filter's own validation uses the files at index 16k+3,
which it does not train on. Training is MSE on random 128x128 windows of the pairs, Adam,
cosine learning-rate decay, resumable from the run folder's checkpoint.

    python -m neurocodec.train.postfilter --config src/neurocodec/train/configs/pf-r15-c48-d6.json --data DIR --out RUN
    python -m neurocodec.train.postfilter --export RUN --model-id ID   # -> weights + card
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .. import codec, zoo
from ..nets.inference import transforms
from ..nets.postfilter import PostFilter, PostFilterConfig
from .data import image_files, load_rgb

VALIDATION_INDEX = 3
"""Files at index 16k+3 (sorted by name) validate the filter; 16k+15 is the codec's held-out split."""


@dataclass(frozen=True)
class PostFilterTrainConfig:
    data: str
    out: str
    base: str = zoo.DEFAULT_MODEL
    channels: int = 32
    depth: int = 4
    crops_per_file: int = 2
    rates_per_crop: int = 3
    pair_size: int = 256
    window: int = 128
    batch: int = 16
    steps: int = 20000
    lr: float = 1e-3
    seed: int = 0
    eval_every: int = 1000
    init: str | None = None  # a derived model's .safetensors to start from when the run has no checkpoint
    # (at most our width and depth: it grows without changing its output, see PostFilter.load_smaller)
    loss: str = "mse"  # or "log-mse": see LOSSES
    warmup: int = 0  # steps of linear learning-rate warm-up: a restart from trained weights with fresh Adam
    # moments otherwise takes full-size steps on every weight at once (pf3's run lost 0.024 dB that way)
    bfloat16: bool = False  # forward and backward under bfloat16 autocast: 2-3x faster on CPUs with AMX,
    # and what the decoder runs there (nets.inference.FILTER_BFLOAT16); the weights and Adam stay float32

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, not {self.loss!r}")


def _log_mse(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (out - ref).square().mean((1, 2, 3)).clamp_min(1e-10).log().mean()


LOSSES = {"mse": F.mse_loss, "log-mse": _log_mse}
"""Training losses. Plain MSE is dominated by the low rates, whose errors are largest, so the
filter learns little where the codec is already good; the mean over windows of log(MSE) values
a tenth of a dB equally at every rate, as a BD-rate over the PSNR range does."""


def _decoded(model: zoo.PhotoModel, color: np.ndarray, rate: int) -> torch.Tensor:
    """g_s's float output for ``color`` at ``rate``: what decoding a file ``neurocodec.encode``
    wrote at effort 0 gives before the post-filter."""
    tf = transforms(model.net, "cpu")
    level = torch.tensor([rate / codec.RATE_SCALE])
    _, _, y_hat = codec.code_latents(model, tf, color, level)
    return tf.synthesis(y_hat, level)[0]


def make_pairs(model: zoo.PhotoModel, files: list[Path], cfg: PostFilterTrainConfig, seed: int) -> dict[str, np.ndarray]:
    """Decoded float16 crops, their uint8 originals and their levels."""
    from tqdm import tqdm

    gen = np.random.default_rng(seed)
    max_rate = (model.levels - 1) * codec.RATE_SCALE
    s = cfg.pair_size
    decoded, original, levels = [], [], []
    with torch.inference_mode():
        for f in tqdm(files, desc="pairs", mininterval=5, dynamic_ncols=True):
            im = load_rgb(f).permute(1, 2, 0).numpy()
            if min(im.shape[:2]) < s:
                continue
            for _ in range(cfg.crops_per_file):
                top, left = gen.integers(im.shape[0] - s + 1), gen.integers(im.shape[1] - s + 1)
                crop = np.ascontiguousarray(im[top : top + s, left : left + s])
                for rate in gen.integers(0, max_rate + 1, cfg.rates_per_crop):
                    decoded.append(_decoded(model, crop, int(rate)).half().numpy())
                    original.append(crop.transpose(2, 0, 1))
                    levels.append(rate / codec.RATE_SCALE)
    return {"decoded": np.stack(decoded), "original": np.stack(original), "level": np.array(levels, np.float32)}


def _pairs(cfg: PostFilterTrainConfig, model: zoo.PhotoModel, run: Path) -> tuple[dict, dict]:
    """(train, validation) pairs, made once per run folder and cached there."""
    files = image_files(cfg.data)
    train = [f for i, f in enumerate(files) if i % 16 not in (15, VALIDATION_INDEX)]
    val = [f for i, f in enumerate(files) if i % 16 == VALIDATION_INDEX]
    out = []
    for name, part, seed in (("train", train, cfg.seed), ("val", val, cfg.seed + 1)):
        path = run / f"pairs-{name}.npz"
        if not path.is_file():
            data = make_pairs(model, part, cfg, seed)
            np.savez(run / f"pairs-{name}.tmp.npz", **data)
            (run / f"pairs-{name}.tmp.npz").replace(path)
        with np.load(path) as z:
            out.append({k: z[k] for k in z.files})
    return out[0], out[1]


def _psnr_gain(net: PostFilter, val: dict) -> dict[str, float]:
    """Mean PSNR change on the validation pairs (8-bit output, as decode writes it), overall and
    per third of the level range."""
    gains, levels = [], val["level"]
    with torch.inference_mode():
        for i in range(len(levels)):
            x = torch.from_numpy(val["decoded"][i : i + 1]).float()
            ref = torch.from_numpy(val["original"][i : i + 1]).float()
            before = x.clamp(0, 1).mul(255).round()
            after = net(x, torch.from_numpy(levels[i : i + 1])).clamp(0, 1).mul(255).round()
            mse0, mse1 = F.mse_loss(before, ref).item(), F.mse_loss(after, ref).item()
            gains.append(10 * math.log10(mse0 / max(mse1, 1e-9)))
    gains = np.array(gains)
    top = net.config.levels - 1
    buckets = {f"levels {a}-{b}": gains[(levels >= a) & (levels < b)] for a, b in ((0, 4), (4, 8), (8, top + 1))}
    return {"all": float(gains.mean()), **{k: float(v.mean()) for k, v in buckets.items() if len(v)}}


def learning_rate(cfg: PostFilterTrainConfig, step: int) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then cosine decay from ``cfg.lr`` to 5 % of it."""
    cosine = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
    return cosine * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cosine


def train(cfg: PostFilterTrainConfig, time_budget: float | None = None) -> None:
    from tqdm import tqdm

    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    torch.manual_seed(cfg.seed)
    base = zoo.load(cfg.base)
    train_pairs, val = _pairs(cfg, base, run)
    net = PostFilter(PostFilterConfig(cfg.channels, cfg.depth, base.levels))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = np.random.default_rng(cfg.seed + 2)
    step = 0
    ckpt = run / "checkpoint.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        gen.bit_generator.state = state["rng"]
        step = state["step"]
    elif cfg.init:
        from safetensors.torch import load_file

        net.load_smaller({k: v.float() for k, v in load_file(cfg.init).items()})

    def save() -> None:
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "rng": gen.bit_generator.state, "step": step},
                   run / "checkpoint.tmp.pt")
        (run / "checkpoint.tmp.pt").replace(ckpt)

    n, s, w = len(train_pairs["level"]), cfg.pair_size, cfg.window
    start = time.monotonic()
    bar = tqdm(total=cfg.steps, initial=step, desc="post-filter", mininterval=5, dynamic_ncols=True)
    with (run / "log.jsonl").open("a") as log:
        while step < cfg.steps:
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg, step)
            idx = gen.integers(n, size=cfg.batch)
            corners = gen.integers(s - w + 1, size=(cfg.batch, 2))
            x = torch.from_numpy(np.stack([train_pairs["decoded"][i, :, t : t + w, l : l + w]
                                           for i, (t, l) in zip(idx, corners)])).float()
            ref = torch.from_numpy(np.stack([train_pairs["original"][i, :, t : t + w, l : l + w]
                                             for i, (t, l) in zip(idx, corners)])).float() / 255
            if gen.integers(2):
                x, ref = x.flip(3), ref.flip(3)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bfloat16):
                out = net(x, torch.from_numpy(train_pairs["level"][idx]))
            loss = LOSSES[cfg.loss](out.float(), ref)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update()
            if step % cfg.eval_every == 0 or step == cfg.steps:
                net.eval()
                record = {"step": step, "loss": loss.item(), "val_psnr_gain_db": _psnr_gain(net, val),
                          "seconds": round(time.monotonic() - start)}
                net.train()
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.write(json.dumps(record))
                save()
            if time_budget is not None and time.monotonic() - start > time_budget:
                break
    save()
    bar.close()


def export(run: Path, model_id: str, dest: Path = zoo.WEIGHTS_DIR) -> str:
    """The run's filter as ``dest/model_id.safetensors`` (fp16, naming its base model and the
    base's SHA-256) with a model card; returns the file's SHA-256."""
    from safetensors.torch import save_file

    from .export import id_problem

    problem = id_problem(model_id, dest)
    if problem:
        raise ValueError(problem)
    cfg = PostFilterTrainConfig(**json.loads((run / "config.json").read_text()))
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    base_card = zoo.card(cfg.base)
    meta = {"family": "postfilter", "base": cfg.base, "base_sha256": base_card["sha256"],
            "channels": cfg.channels, "depth": cfg.depth, "levels": len(base_card["lambdas"])}
    path = dest / f"{model_id}.safetensors"
    save_file({k: v.half().contiguous() for k, v in state["net"].items()}, str(path), {"config": json.dumps(meta)})
    path.chmod(0o644)  # safetensors writes owner-only; package files are world-readable
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    card = {
        "model_id": model_id, "file": path.name, "sha256": sha,
        "architecture": f"{cfg.base} followed by a post-filter: {cfg.depth} 3x3 convolutions of {cfg.channels} "
                        "channels at half resolution, conditioned on the rate level, adding a residual to g_s's output",
        "base": cfg.base, "config": meta,
        "training": {"data": "photos-train: 256x256 crops of the training split coded by the base model at "
                             f"random rates; files at index 16k+{VALIDATION_INDEX} validate, 16k+15 stay held out",
                     "steps": state["step"], "batch": cfg.batch, "window": cfg.window, "lr": cfg.lr,
                     "seed": cfg.seed, "loss": cfg.loss, "warmup": cfg.warmup,
                     "bfloat16": cfg.bfloat16, **({"init": Path(cfg.init).name} if cfg.init else {})},
        "validation": log[-1] if log else None,
    }
    (dest / f"{model_id}.json").write_text(json.dumps(card, indent=1) + "\n")
    return sha


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m neurocodec.train.postfilter", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="JSON file with PostFilterTrainConfig fields (flags override it)")
    p.add_argument("--data", help="folder of training images (photos-train)")
    p.add_argument("--out", help="run folder: config, cached pairs, checkpoint and log live here")
    p.add_argument("--steps", type=int)
    p.add_argument("--time-budget", type=float, help="stop cleanly after this many seconds")
    p.add_argument("--init", help="start from this derived model's weights file (when the run has no checkpoint); "
                   "a smaller filter grows to this config's width and depth without changing its output")
    p.add_argument("--loss", choices=sorted(LOSSES), help="training loss (default mse)")
    p.add_argument("--bfloat16", action="store_true", default=None,
                   help="train under bfloat16 autocast (fast on CPUs with AMX)")
    p.add_argument("--export", type=Path, metavar="RUN", help="write RUN's filter into the package's weights")
    p.add_argument("--model-id", help="with --export: the derived model's ID")
    p.add_argument("--dest", type=Path, default=zoo.WEIGHTS_DIR, help="with --export: where the two files go "
                   "(default: the package's weights)")
    args = p.parse_args(argv)
    if args.export:
        if not args.model_id:
            p.error("--export needs --model-id")
        try:
            print(export(args.export, args.model_id, args.dest))
        except ValueError as e:
            p.error(str(e))
        return
    values: dict = json.loads(args.config.read_text()) if args.config else {}
    for f in fields(PostFilterTrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    if "data" not in values or "out" not in values:
        p.error("--data and --out are required (on the command line or in --config)")
    train(PostFilterTrainConfig(**values), time_budget=args.time_budget)


if __name__ == "__main__":
    main()
