"""Rate-distortion training of the photo model, resumable in time-boxed chunks.

Loss per sample: R + lambda * 255^2 * MSE with R in bits per pixel, where every sample in a batch
draws its own lambda level so one set of weights (with gain units) learns every rate at once.
A run lives in one folder: ``config.json`` (what is trained), ``ckpt.pt`` (model + optimizer +
step, never shipped), ``log.jsonl`` (one line per logging interval and per held-out evaluation).
``--time-budget`` ends a chunk cleanly with a checkpoint, so the same command resumes it; that is
how training runs on an accelerator lent in calls of a few minutes each.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..nets import build
from ..nets.hyperprior import HyperpriorConfig, MeanScaleHyperprior
from .data import CropSampler, evaluation_images, image_files, split


@dataclass
class TrainConfig:
    data: str
    out: str
    steps: int = 100_000
    batch: int = 16
    crop: int = 256
    lr: float = 1e-4
    decay_at: float = 0.9  # fraction of steps after which lr drops 10x
    clip: float = 1.0
    seed: int = 0
    amp: bool = True  # bfloat16 autocast for the transforms on CUDA (ignored on the CPU)
    context_lr_scale: float = 1.0  # learning-rate multiplier for a context model's own layers
    blocks_lr_scale: float = 1.0  # the same for g_s's residual blocks
    trainable: list[str] | None = None  # parameter-name prefixes to train; None: all
    rate_rounding: str = "noise"  # or "straight-through": price the rounded latents (MeanScaleHyperprior.forward)
    smooth_fraction: float = 0.0  # share of crops replaced by flat or gently shaded patches (data.smooth_patch)
    holdout_every: int = 16
    log_every: int = 200
    model: dict = field(default_factory=lambda: asdict(HyperpriorConfig()))

    def model_config(self) -> HyperpriorConfig:
        m = dict(self.model)
        return HyperpriorConfig(**m)


def rd_loss(model: MeanScaleHyperprior, x: torch.Tensor, level: torch.Tensor, lambdas: torch.Tensor,
            amp: bool = False, rate_rounding: str = "noise"):
    """Per-batch R + lambda D; with ``amp`` the forward pass runs under CUDA bfloat16 autocast and
    the rate and distortion are summed in float32 (bfloat16 sums of log-likelihoods lose bits)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        out = model(x, level, rate_rounding)
    out = {k: v.float() for k, v in out.items()}
    pixels = x.shape[2] * x.shape[3]
    bits = -(torch.log2(out["y_likelihood"]).sum((1, 2, 3)) + torch.log2(out["z_likelihood"]).sum((1, 2, 3)))
    bpp = bits / pixels
    mse = ((out["x_hat"] - x) ** 2).mean((1, 2, 3))
    loss = (bpp + lambdas[level.long()] * 255**2 * mse).mean()
    return loss, bpp.detach(), mse.detach()


@torch.no_grad()
def evaluate(model: MeanScaleHyperprior, files: list[Path], device: torch.device, max_images: int = 12,
             use_context: bool = True):
    """Estimated bpp (from likelihoods of rounded latents) and PSNR per level on held-out images."""
    model.eval()
    images = evaluation_images(files[:max_images], device)  # decoded once, used at every level
    results = []
    for lvl in range(model.config.levels):
        bpps, psnrs = [], []
        for x in images:
            level = torch.full((1,), float(lvl), device=device)
            bits, x_hat = model.estimate(x, level, use_context)
            mse = torch.mean((torch.round(x_hat.clamp(0, 1) * 255) - torch.round(x * 255)) ** 2).item()
            bpps.append(bits.item() / (x.shape[2] * x.shape[3]))
            psnrs.append(10 * math.log10(255**2 / max(mse, 1e-10)))
        results.append({"level": lvl, "bpp": sum(bpps) / len(bpps), "psnr": sum(psnrs) / len(psnrs)})
    model.train()
    return results


def save_portable(model: MeanScaleHyperprior, step: int, path: Path) -> None:
    """Model-only fp16 snapshot (safetensors, no optimizer): small enough to move between machines."""
    from safetensors.torch import save_file

    state = {k: v.detach().half().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"step": str(step)})
    tmp.replace(path)


def train(
    cfg: TrainConfig,
    time_budget: float | None = None,
    device: str | None = None,
    init: Path | None = None,
) -> Path:
    """Train (or resume) the run in ``cfg.out``; returns the checkpoint path.

    Without a checkpoint in the run folder, ``init`` (a ``save_portable`` snapshot, or shipped
    weights beside their model card) seeds the weights and the step count, with a fresh optimizer.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "ckpt.pt"
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)

    model = build(cfg.model_config()).to(dev)
    if cfg.trainable is not None:  # the rest is frozen: no gradient, no backward pass through it
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith(tuple(cfg.trainable)))
    # New layers on top of a trained network catch up faster with a larger step: one group each
    # for the base network, a context model's layers and g_s's residual blocks (in this order).
    kinds = {"context.": "context", "ep.": "context", "slices.": "context", "synthesis_blocks.": "blocks"}
    scale = {"base": 1.0, "context": cfg.context_lr_scale, "blocks": cfg.blocks_lr_scale}
    members: dict[str, list] = {"base": [], "context": [], "blocks": []}
    for n, p in model.named_parameters():
        if p.requires_grad:
            members[next((v for k, v in kinds.items() if n.startswith(k)), "base")].append(p)
    groups = [{"params": ps, "scale": scale[kind]} for kind, ps in members.items() if ps]
    opt = torch.optim.Adam(groups, lr=cfg.lr)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for g, wanted in zip(opt.param_groups, groups):  # the config's scale, not the checkpoint's
            g["scale"] = wanted["scale"]
        step = int(state["step"])
        torch.manual_seed(cfg.seed + step)
    elif init is not None and Path(init).exists():
        from .export import trainable_state

        init_state, step = trainable_state(Path(init))
        missing, unexpected = model.load_state_dict(init_state, strict=False)
        # A context model may start from a plain hyperprior, channel slices from a checkerboard
        # model, blocks may join a trained g_s.
        if unexpected or any(not k.startswith(("context.", "ep.", "slices.", "synthesis_blocks.")) for k in missing):
            raise ValueError(f"{init} does not fit this model: missing {missing}, unexpected {unexpected}")
        torch.manual_seed(cfg.seed + step)

    train_files, held_files = split(image_files(cfg.data), cfg.holdout_every)
    sampler = CropSampler(train_files, cfg.crop, dev, seed=cfg.seed + step, smooth_fraction=cfg.smooth_fraction)
    lambdas = torch.tensor(model.config.lambdas, device=dev)
    levels = model.config.levels
    log = (out / "log.jsonl").open("a")

    def save():
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp)
        tmp.replace(ckpt_path)

    from tqdm import tqdm

    stop = _StopFlag()
    start = time.monotonic()
    bar = tqdm(total=cfg.steps, initial=step, desc="train", mininterval=5, dynamic_ncols=True)
    sums = torch.zeros(3, device=dev)  # loss, bpp, mse summed since the last log line
    count = 0
    model.train()
    while step < cfg.steps and not stop.raised:
        if time_budget is not None and time.monotonic() - start > time_budget:
            break
        lr = cfg.lr if step < cfg.decay_at * cfg.steps else cfg.lr / 10
        for g in opt.param_groups:
            g["lr"] = lr * g.get("scale", 1.0)  # checkpoints from before the groups had no scale
        x = sampler.sample(cfg.batch)
        level = torch.randint(levels, (cfg.batch,), device=dev).float()
        loss, bpp, mse = rd_loss(model, x, level, lambdas, amp=cfg.amp and dev.type == "cuda",
                                 rate_rounding=cfg.rate_rounding)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.clip)
        opt.step()
        step += 1
        count += 1
        sums += torch.stack([loss.detach(), bpp.mean(), mse.mean()])
        bar.update(1)
        if step % cfg.log_every == 0:
            loss_m, bpp_m, mse_m = (sums / count).tolist()
            rec = {"step": step, "lr": lr, "loss": loss_m, "bpp": bpp_m, "mse": mse_m,
                   "elapsed_s": round(time.monotonic() - start, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{loss_m:.3f}", bpp=f"{bpp_m:.3f}")
            sums.zero_()
            count = 0
        if step % 5000 == 0:
            save()
    bar.close()
    stop.restore()
    save()
    save_portable(model, step, out / "portable.safetensors")
    if held_files:
        # The checkpoint is safe by now; the held-out figures take minutes on a CPU, so a stopped
        # run says what it is doing, and a second Ctrl-C skips them instead of ending in a traceback.
        if stop.raised:
            print(f"stopped at step {step:,}, checkpoint saved in {out}; measuring the held-out split "
                  "(Ctrl-C again to skip)", file=sys.stderr, flush=True)
        try:
            record = {"step": step, "holdout": evaluate(model, held_files, dev)}
            if model.config.context != "none":  # what the context saves: every latent coded as an anchor
                record["holdout_without_context"] = evaluate(model, held_files, dev, use_context=False)
            log.write(json.dumps(record) + "\n")
        except KeyboardInterrupt:
            print(f"held-out figures skipped; checkpoint of step {step:,} in {out}", file=sys.stderr)
    log.close()
    return ckpt_path


class _StopFlag:
    """Ctrl-C or SIGTERM ends training after the current step, with a checkpoint, not mid-write."""

    def __init__(self):
        import signal

        self.raised = False
        self._signal = signal
        self._previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def _handle(self, signum, frame):
        self.raised = True

    def restore(self):
        for sig, handler in self._previous.items():
            self._signal.signal(sig, handler)
