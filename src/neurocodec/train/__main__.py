"""``python -m neurocodec.train``: train or resume the photo model (works without the CLI extras)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from .trainer import TrainConfig, train


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m neurocodec.train", description=__doc__)
    p.add_argument("--config", type=Path, help="JSON file with TrainConfig fields (flags override it)")
    p.add_argument("--data", help="folder of training images")
    p.add_argument("--out", help="run folder: config, checkpoint and log live here")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--crop", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--time-budget", type=float, help="stop cleanly after this many seconds")
    p.add_argument("--init", type=Path, help="where to start when the run has no checkpoint: a portable snapshot, or shipped weights (ID.safetensors beside its model card ID.json)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    args = p.parse_args(argv)

    values: dict = json.loads(args.config.read_text()) if args.config else {}
    for f in fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    if "data" not in values or "out" not in values:
        p.error("--data and --out are required (on the command line or in --config)")
    cfg = TrainConfig(**values)
    train(cfg, time_budget=args.time_budget, device=args.device, init=args.init)


if __name__ == "__main__":
    main()
