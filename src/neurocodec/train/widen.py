"""Give a trained model more latent channels (m) without losing what it has learned.

A model's quality at high rate is capped by m, the number of latent channels, not by the rate it
spends: with the latents left unrounded, photo-cb64 (m=96) reaches only 32.6 dB on held-out photos
(benchmarks/results/ceiling-photo-cb64.json), and a linear transform of 16x16 blocks keeping 96
components reaches 29.2 dB, 128 reach 30.9 dB, 192 reach 34.2 dB. On two CPU cores a wider model
cannot be trained from scratch in reasonable time, so we grow the trained one:

- the old channels keep their weights everywhere, at the same positions;
- each new channel gets small random analysis and synthesis filters: the picture and the rate
  barely change, but gradients reach both sides (with a zero synthesis filter a new channel
  could never leave zero, and while a new latent rounds to 0 only the analysis side learns);
- the hyper-analysis ignores the new channels at first (z is unchanged), the entropy parameters
  of a new channel start as a constant scale and zero mean, and the context model neither reads
  nor predicts them; training then teaches all of these.

The entropy-side widths stay what they were (``entropy_width`` = the old m), so every layer there
keeps its trained weights and the file grows only where the latents do.

    python -m neurocodec.train.widen WEIGHTS OUT --m 144 [--step 75500]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from ..nets.hyperprior import HyperpriorConfig
from .export import density_from_tables

ANALYSIS_SCALE = 0.05
SYNTHESIS_SCALE = 0.25
NEW_SCALE = 0.2
"""New channels start nearly off: analysis filters at 5 % of the old filters' spread (their y, after
the gains, mostly rounds to 0 at every level), synthesis filters at 25 %, and a narrow Gaussian
scale, so they cost almost no bits (a zero under N(0, 0.2) costs 0.02 bit). Gradients still
reach them through the straight-through rounding, and Adam grows small weights quickly in relative
terms, whereas scales, biases and gains move only about lr per step. Measured on photo-cb64: with
filters drawn at the old spread the new channels added 2.3 bpp at the middle level, and a wide
initial scale of 0.5 cost 0.1 bpp at every level."""


def _pad(t: torch.Tensor, dim: int, extra: torch.Tensor) -> torch.Tensor:
    return torch.cat([t, extra.to(t.dtype)], dim=dim)


def _zeros_along(t: torch.Tensor, dim: int, count: int) -> torch.Tensor:
    shape = list(t.shape)
    shape[dim] = count
    return torch.zeros(shape, dtype=t.dtype)


def _split_param_channels(t: torch.Tensor, m_old: int, m_new: int, dim: int, fill_scale=None, fill_mean=None):
    """A tensor whose ``dim`` holds (scales(m_old), means(m_old)) -> (scales(m_new), means(m_new)),
    the new entries filled with ``fill_scale`` / ``fill_mean`` (zeros when ``None``)."""
    scales, means = t.split(m_old, dim=dim)
    extra = m_new - m_old
    new_s = _zeros_along(t, dim, extra) if fill_scale is None else fill_scale
    new_m = _zeros_along(t, dim, extra) if fill_mean is None else fill_mean
    return torch.cat([scales, new_s.to(t.dtype), means, new_m.to(t.dtype)], dim=dim)


def widen_state(state: dict[str, torch.Tensor], config: HyperpriorConfig, m_new: int,
                seed: int = 0) -> tuple[dict[str, torch.Tensor], HyperpriorConfig]:
    """``state`` of a model with ``config`` -> the state and config of the same model with
    ``m_new`` latent channels (see the module docstring). Pure: ``state`` is not modified."""
    m_old = config.m
    if m_new <= m_old:
        raise ValueError(f"m can only grow: {m_old} -> {m_new}")
    extra = m_new - m_old
    gen = torch.Generator().manual_seed(seed)
    s = {k: v.float().clone() for k, v in state.items() if not k.startswith("tables.")}

    def randn_like(ref: torch.Tensor, shape, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * ref.std() * scale

    # g_a's last conv (out, in, k, k): new output filters, drawn like the old ones.
    w = s["g_a.6.weight"]
    s["g_a.6.weight"] = _pad(w, 0, randn_like(w, (extra, *w.shape[1:]), ANALYSIS_SCALE))
    s["g_a.6.bias"] = _pad(s["g_a.6.bias"], 0, torch.zeros(extra))
    # g_s's first deconv (in, out, k, k): small filters for the new inputs.
    w = s["g_s.0.weight"]
    s["g_s.0.weight"] = _pad(w, 0, randn_like(w, (extra, *w.shape[1:]), SYNTHESIS_SCALE))
    # h_a's first conv (out, in, k, k): blind to the new channels, so z is unchanged.
    w = s["h_a.0.weight"]
    s["h_a.0.weight"] = _pad(w, 1, _zeros_along(w, 1, extra))
    # h_s's last conv (out = scales then means): constant parameters for the new channels.
    w, b = s["h_s.4.weight"], s["h_s.4.bias"]
    scale_bias = torch.full((extra,), NEW_SCALE)
    s["h_s.4.weight"] = _split_param_channels(w, m_old, m_new, 0)
    s["h_s.4.bias"] = _split_param_channels(b, m_old, m_new, 0, fill_scale=scale_bias)
    # Gains: the new channels start at each level's geometric mean gain.
    for name in ("gain", "inv_gain"):
        g = s[name]
        s[name] = _pad(g, 1, g.abs().log().mean(1, keepdim=True).exp().expand(-1, extra))
    if config.context == "checkerboard":
        w = s["context.weight"]  # (2e, m, k, k): does not read the new channels yet
        s["context.weight"] = _pad(w, 1, _zeros_along(w, 1, extra))
        w = s["ep.0.weight"]  # input: (scales, means) of h_s, then the context features
        hyper, ctx = w.split([2 * m_old, w.shape[1] - 2 * m_old], dim=1)
        s["ep.0.weight"] = torch.cat([_split_param_channels(hyper, m_old, m_new, 1), ctx], dim=1)
        s["ep.4.weight"] = _split_param_channels(s["ep.4.weight"], m_old, m_new, 0)
        s["ep.4.bias"] = _split_param_channels(s["ep.4.bias"], m_old, m_new, 0)
    elif config.context != "none":
        raise ValueError(f"cannot widen a '{config.context}' context model")
    return s, dataclasses.replace(config, m=m_new, entropy_width=config.e)


def main(argv: list[str] | None = None) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    p = argparse.ArgumentParser(prog="python -m neurocodec.train.widen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="a shipped ID.safetensors or a run's portable.safetensors")
    p.add_argument("out", type=Path, help="where to write the widened snapshot (an --init for training)")
    p.add_argument("--m", type=int, required=True, help="the new number of latent channels")
    p.add_argument("--config", type=Path, help="the model's config as JSON [default: from the weights' metadata]")
    p.add_argument("--step", type=int, help="training step to record [default: the snapshot's]")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with safe_open(str(args.weights), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata() or {}
    if args.config is None and "config" not in meta:
        p.error(f"{args.weights} does not record its config (a run's snapshot): pass --config RUN/config.json")
    raw = json.loads(args.config.read_text()) if args.config else json.loads(meta["config"])
    raw = raw.get("model", raw)
    config = HyperpriorConfig(**{**raw, "lambdas": tuple(raw["lambdas"])})
    wide, wide_config = widen_state(state, config, args.m, args.seed)
    if not any(k.startswith("z_density.") for k in wide):  # a shipped file: z's density is in its tables
        wide.update(density_from_tables(state, config.n))
    step = args.step if args.step is not None else int(meta.get("step", 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in wide.items()}, str(args.out),
              metadata={"step": str(step), "config": json.dumps(dataclasses.asdict(wide_config))})
    print(f"wrote {args.out}: m {config.m} -> {args.m} (entropy width {wide_config.e}), step {step}")


if __name__ == "__main__":
    main()
