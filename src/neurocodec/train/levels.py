"""Widen a trained model's rate range by adding gain-unit levels beyond its end lambdas.

Gain units (Cui et al. 2021) hold one gain vector per trained lambda. To reach rates outside the
trained range we add rows for the new lambdas, extrapolated per channel along the line through
the two nearest trained rows in (log lambda, log gain) — the trend the trained gains follow, close
to gain ~ sqrt(lambda) — and then fine-tune. The existing rows are kept exactly, so the old levels
start out unchanged.

    python -m neurocodec.train.levels SNAPSHOT OUT --lambdas 0.0005,0.0009,...,0.36
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

GAIN_TABLES = ("gain", "inv_gain", "hyper_gain", "inv_hyper_gain")


def extend_rows(table: torch.Tensor, old: list[float], new: list[float]) -> torch.Tensor:
    """``table`` (len(old), C) -> (len(new), C); ``old`` must be a contiguous run of ``new``."""
    start = next((i for i in range(len(new)) if new[i : i + len(old)] == old), None)
    if start is None:
        raise ValueError(f"the new lambdas {new} must contain the old ones {old} in order, contiguously")
    if len(old) < 2:
        raise ValueError("need at least two trained levels to extrapolate from")
    log_t = table.abs().double().clamp_min(1e-12).log()
    rows = []
    for i, lam in enumerate(new):
        j = i - start
        if 0 <= j < len(old):
            rows.append(table[j].double())
            continue
        a, b = (0, 1) if j < 0 else (len(old) - 1, len(old) - 2)
        slope = (log_t[a] - log_t[b]) / (math.log(old[a]) - math.log(old[b]))
        rows.append((log_t[a] + slope * (math.log(lam) - math.log(old[a]))).exp())
    return torch.stack(rows).to(table.dtype)


def extend_state(state: dict[str, torch.Tensor], old: list[float], new: list[float]) -> dict[str, torch.Tensor]:
    """A state dict with every gain table extended from ``old`` to ``new`` lambdas."""
    out = dict(state)
    for name in GAIN_TABLES:
        out[name] = extend_rows(state[name], old, new)
    return out


def main(argv: list[str] | None = None) -> None:
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    p = argparse.ArgumentParser(prog="python -m neurocodec.train.levels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snapshot", type=Path, help="portable.safetensors of the trained run")
    p.add_argument("out", type=Path, help="where to write the extended snapshot")
    p.add_argument("--lambdas", required=True, help="comma-separated, containing the run's lambdas")
    p.add_argument("--old-config", type=Path, help="the run's config.json [default: next to the snapshot]")
    args = p.parse_args(argv)
    cfg = json.loads((args.old_config or args.snapshot.parent / "config.json").read_text())
    old = [float(v) for v in cfg["model"]["lambdas"]]
    new = [float(v) for v in args.lambdas.split(",")]
    with safe_open(str(args.snapshot), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    save_file({k: v.contiguous() for k, v in extend_state(state, old, new).items()}, str(args.out), metadata=meta)
    print(f"wrote {args.out}: {len(old)} -> {len(new)} levels")


if __name__ == "__main__":
    main()
