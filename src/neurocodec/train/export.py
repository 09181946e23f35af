"""Turn a trained float model into a shipped weight file: fp16 parameters plus coding tables.

The file is self-contained: the factorized prior of z is frozen into per-channel PMFs and the
Gaussian conditional into per-scale PMFs, both stored next to the weights, so that decoding
depends only on bytes in the file and never on recomputing densities with floating point.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..io import new_file_mode
from ..nets import build
from ..nets.channel_context import SliceContext
from ..nets.checkerboard import CheckerboardConv
from ..nets.hyperprior import HyperpriorConfig, MeanScaleHyperprior
from ..nets.priors import gaussian_tables, scale_table

FORMAT = "neurocodec-weights-1"
ARCHITECTURES = {
    "none": "mean-scale hyperprior with GDN and gain units (Minnen et al. 2018; Cui et al. 2021)",
    "checkerboard": "mean-scale hyperprior with GDN, gain units and a checkerboard context model "
                    "(Minnen et al. 2018; Cui et al. 2021; He et al. 2021)",
}


def architecture(config: HyperpriorConfig) -> str:
    """The model card's one-line description of a photo network."""
    text = ARCHITECTURES[config.context]
    if config.synthesis_blocks:
        text += f"; {len(config.synthesis_blocks)} residual block(s) in g_s after layer(s) {list(config.synthesis_blocks)}"
    if config.channel_slices > 1:
        text += f"; {config.channel_slices} channel slices inside each checkerboard half (Minnen & Singh 2020; He et al. 2022)"
    return text


def load_trained(path: Path, config: HyperpriorConfig) -> tuple[MeanScaleHyperprior, int]:
    """A model from a ``portable.safetensors`` snapshot or a ``ckpt.pt`` checkpoint, and its step."""
    model = build(config)
    if str(path).endswith(".safetensors"):
        with safe_open(str(path), framework="pt") as f:
            model.load_state_dict({k: f.get_tensor(k).float() for k in f.keys()})
            step = int(f.metadata().get("step", 0))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        step = int(state["step"])
    return model.eval(), step


def density_from_tables(state: dict[str, torch.Tensor], channels: int, steps: int = 1500) -> dict[str, torch.Tensor]:
    """``z_density.*`` parameters fitted to a shipped file's frozen z tables.

    Shipped weights keep the density of z only as integer PMFs (the coder's tables), not as the
    trainable ``FactorizedDensity``; training needs the latter, and a fresh one would misprice z
    for thousands of steps. Fitting it to the tables (cross-entropy on their support) restores it.
    """
    from ..nets.priors import FactorizedDensity
    from ..zoo import _ragged

    offsets = state["tables.z_offsets"].long()
    lengths = state["tables.z_lengths"].long()
    flat = state["tables.z_pmfs"].double()
    if len(offsets) != channels or len(lengths) != channels or int(lengths.sum()) != len(flat):
        raise ValueError(f"z tables do not describe {channels} channels")
    width = int(lengths.max())
    symbols = offsets[:, None] + torch.arange(width)[None, :]
    target = torch.zeros(channels, width, dtype=torch.float64)
    for c, row in enumerate(_ragged(flat.numpy(), lengths.numpy())):  # the zoo's reading of the tables
        target[c, : len(row)] = torch.from_numpy(row)
    with torch.random.fork_rng():  # the density's random start must not depend on the caller's RNG
        torch.manual_seed(0)
        density = FactorizedDensity(channels)
    opt = torch.optim.Adam(density.parameters(), lr=1e-2)
    v = symbols.float()[:, None, :]
    for _ in range(steps):
        mass = density._interval_mass(v)[:, 0, :].clamp_min(1e-12)
        loss = -(target.float() * mass.log()).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {f"z_density.{k}": v.detach() for k, v in density.state_dict().items()}


def trainable_state(path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """A training start from ``path`` and its step: a run's ``portable.safetensors``, or shipped
    weights (``ID.safetensors`` beside its model card), so that training resumes from what was
    committed when a run's own snapshot is gone. A shipped file drops its coding tables, gets back
    a trainable density of z fitted to them, and takes its step from the card."""
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k).float() for k in f.keys()}
        meta = f.metadata() or {}
    if "step" in meta:
        return state, int(meta["step"])
    card = path.with_suffix(".json")
    if "tables.z_offsets" not in state or not card.is_file():
        raise ValueError(f"{path} is neither a run's snapshot (no 'step' in its metadata) "
                         f"nor shipped weights with their model card {card.name}")
    step = int(json.loads(card.read_text())["training"]["steps"])
    channels = len(state["tables.z_offsets"])
    density = density_from_tables(state, channels)
    state = {k: v for k, v in state.items() if not k.startswith("tables.")}
    return {**state, **density}, step



def _ragged(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    return np.concatenate(rows).astype(np.float32), lengths


def export(model: MeanScaleHyperprior, dest: Path, model_id: str) -> str:
    """Write ``dest`` (safetensors) and return its SHA-256 hex digest."""
    offsets, z_rows = model.z_density.to_tables()
    scales = scale_table()
    radii, y_pmfs = gaussian_tables(scales)
    y_rows = [y_pmfs[k, : 2 * radii[k] + 2] for k in range(len(scales))]

    tensors = {
        k: v.detach().half().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("z_density.")
    }
    for name, module in model.named_modules():  # taps a masked conv never reads are stored as 0
        if isinstance(module, CheckerboardConv):
            tensors[f"{name}.weight"] = module.masked_weight().detach().half().contiguous()
        if isinstance(module, SliceContext):
            tensors[f"{name}.y_conv.weight"] = (module.y_conv.weight * module.mask).detach().half().contiguous()
    z_flat, z_len = _ragged(z_rows)
    y_flat, y_len = _ragged(y_rows)
    tensors.update({
        "tables.z_offsets": torch.from_numpy(offsets.astype(np.int32)),
        "tables.z_pmfs": torch.from_numpy(z_flat),
        "tables.z_lengths": torch.from_numpy(z_len),
        "tables.y_scales": torch.from_numpy(scales.astype(np.float32)),
        "tables.y_radii": torch.from_numpy(radii.astype(np.int32)),
        "tables.y_pmfs": torch.from_numpy(y_flat),
        "tables.y_lengths": torch.from_numpy(y_len),
    })
    arch = "mean-scale-hyperprior" if model.config.context == "none" else f"mean-scale-hyperprior+{model.config.context}"
    meta = {"format": FORMAT, "model_id": model_id, "architecture": arch,
            "config": json.dumps(asdict(model.config))}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.chmod(new_file_mode())  # safetensors writes 0600; the package's files must be readable by all
    tmp.replace(dest)
    return hashlib.sha256(dest.read_bytes()).hexdigest()



def write_card(dest_dir: Path, model_id: str, sha256: str, fields: dict) -> Path:
    """The model card: what the weights are, how they were made, and what they measure."""
    card = {"model_id": model_id, "file": f"{model_id}.safetensors", "sha256": sha256, **fields}
    path = dest_dir / f"{model_id}.json"
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def id_problem(model_id: str, dest: Path, replace: bool = False) -> str | None:
    """Why ``model_id`` cannot name new weights in ``dest``, or None. An ID names one set of weights
    for ever (``.nac`` headers record it), so a shipped, retired or existing ID is refused."""
    from .. import zoo

    if not MODEL_ID.fullmatch(model_id) or model_id == "retired":
        return f"model ID {model_id!r} must be 1-64 of a-z 0-9 . _ - (starting with a letter or digit), not 'retired'"
    retired = dict(zoo.retired())
    if (dest / "retired.json").is_file():
        retired.update(json.loads((dest / "retired.json").read_text()))
    if model_id in retired:
        return f"model ID {model_id} was retired; files made with it need its old weights: pick a new ID"
    if replace:
        return None
    if model_id in zoo.shipped():
        return f"model ID {model_id} is shipped; files made with it need those weights: pick a new ID"
    for ext in ("safetensors", "json"):
        if (dest / f"{model_id}.{ext}").exists():
            return f"{dest / f'{model_id}.{ext}'} exists: pick a new ID (or --replace one never released)"
    return None


def main(argv: list[str] | None = None) -> None:
    """``python -m neurocodec.train.export RUN_DIR`` -> package weights + model card."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m neurocodec.train.export", description=main.__doc__)
    p.add_argument("run", type=Path, help="training run folder (config.json + portable.safetensors or ckpt.pt)")
    p.add_argument("--model-id", required=True, help="a new ID: an ID names one set of weights for ever")
    p.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    p.add_argument("--replace", action="store_true",
                   help="overwrite weights already under this ID (only for a model that was never released)")
    p.add_argument("--note", action="append", default=[],
                   help="a line of training history for the model card (repeatable), e.g. how the run was seeded")
    args = p.parse_args(argv)

    from .trainer import TrainConfig

    cfg = TrainConfig(**json.loads((args.run / "config.json").read_text()))
    src = args.run / "portable.safetensors"
    if not src.exists():
        src = args.run / "ckpt.pt"
    dest = args.dest / f"{args.model_id}.safetensors"
    problem = id_problem(args.model_id, args.dest, args.replace)
    if problem:
        p.error(problem)
    model, step = load_trained(src, cfg.model_config())
    sha = export(model, dest, args.model_id)
    holdout = None
    log = args.run / "log.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if "holdout" in rec:
                holdout = rec
    write_card(args.dest, args.model_id, sha, {
        "architecture": architecture(model.config),
        "config": asdict(model.config),
        "training": {
            "data": f"{Path(cfg.data).name}, every {cfg.holdout_every}th file (sorted by name) held out",
            "steps": step, "batch": cfg.batch, "crop": cfg.crop, "lr": cfg.lr, "decay_at": cfg.decay_at,
            **({"trainable": cfg.trainable, "blocks_lr_scale": cfg.blocks_lr_scale} if cfg.trainable else {}),
            **({"rate_rounding": cfg.rate_rounding} if cfg.rate_rounding != "noise" else {}),
            **({"smooth_fraction": cfg.smooth_fraction} if cfg.smooth_fraction else {}),
            "loss": "bpp + lambda * 255^2 * MSE, one lambda level drawn per sample",
            "history": args.note,
        },
        "lambdas": list(model.config.lambdas),
        "holdout_estimate": holdout,
        "measured": {},
    })
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB, sha256 {sha[:16]}…)")


if __name__ == "__main__":
    main()
