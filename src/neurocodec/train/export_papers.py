"""Export a trained paper model to the zoo: fp16 weights, code tables, step table and model card.

The histogram tables are counted from the codes that the *fp16* network gives on the training
split, so they describe exactly what the shipped encoder produces. The step table maps quality
1..100 to odd multipliers of the fine step, geometrically from the coarsest step that still
leaves two symbols (quality 1) to the fine step itself (quality 100).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..entropy.histogram import HistogramCoder
from .export import FORMAT, write_card
from .papers import DNCNN_DEPTH, DNCNN_QUALITIES, MNIST_TRAIN, PATCH, RECIPES, Recipe, build, digit_split

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

PAPERS = {
    "cae20": "20-layer convolutional autoencoder, 3x3 convs + ReLU, 7x7x1 code, tanh output",
    "fc196": "deep fully connected autoencoder 784-1000-500-196, sigmoid units",
    "cae28": "small convolutional autoencoder with a 28-value (1x28) code: two conv+pool stages and a linear layer",
    "dncnn": f"DnCNN artifact remover, {DNCNN_DEPTH} layers of 3x3 convs with 64 filters, residual learning",
}


def _trained(recipe: Recipe, run: Path) -> tuple[torch.nn.Module, int]:
    state = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
    net = build(recipe)
    # Round-trip through fp16 so everything measured below is what the shipped file computes.
    net.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in state["model"].items()})
    return net.eval(), int(state["epoch"])


def step_table(max_step: int) -> np.ndarray:
    """Odd step multipliers for quality 1..100, non-increasing, from ``max_step`` down to 1."""
    q = np.arange(1, 101)
    k = max_step ** ((100 - q) / 99)
    odd = 2 * np.round((k - 1) / 2) + 1
    return np.minimum(odd, max_step).astype(np.int32)


@torch.no_grad()
def _codes(net: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    return torch.cat([net.encode(x[i : i + 1000]) for i in range(0, len(x), 1000)]).flatten(1).double().numpy()


def _save(dest: Path, tensors: dict[str, torch.Tensor], config: dict, model_id: str, architecture: str) -> str:
    meta = {"format": FORMAT, "model_id": model_id, "architecture": architecture, "config": json.dumps(config)}
    tmp = dest.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    tmp.replace(dest)
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def _half(net: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}


def _epochs_log(run: Path) -> list[dict]:
    log = run / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def export(recipe: Recipe, run: Path, data: Path | None) -> Path:
    """Write ``<id>.safetensors`` and ``<id>.json`` into the package's weights folder."""
    net, epochs = _trained(recipe, run)
    training = {
        "recipe": {"epochs": recipe.epochs, "batch": recipe.batch, "lr": recipe.lr, "optimizer": "Adam", "loss": "MSE"},
        "epochs_trained": epochs,
        "log": _epochs_log(run),
    }
    if training["log"] and "train_images" in training["log"][-1]:
        training["train_images"] = training["log"][-1]["train_images"]
    if recipe.arch == "dncnn":
        config = {"family": "jpeg+dncnn", "net_arch": "dncnn", "depth": DNCNN_DEPTH}
        tensors = _half(net, "net")
        training["data"] = (f"photos-train (every 16th file held out), random {PATCH}x{PATCH} colour patches "
                            f"of Pillow JPEG at qualities {list(DNCNN_QUALITIES)}, 500 steps of 16 patches per epoch")
    else:
        if data is None:
            raise SystemExit("export of an autoencoder needs --data (its training codes make the tables)")
        train_u8, _ = digit_split(RECIPES[recipe.base].dataset if recipe.base else recipe.dataset, data)
        x = torch.from_numpy(train_u8.copy()).float().div_(255).unsqueeze(1)
        base = net
        if recipe.base:
            base, _ = _trained(RECIPES[recipe.base], run.parent / recipe.base)
        coder = HistogramCoder.fit(_codes(base, x))
        steps = step_table(coder.max_step)
        config = {"family": "autoencoder", "net_arch": RECIPES[recipe.base].arch if recipe.base else recipe.arch,
                  "origin": coder.origin, "fine_step": coder.fine_step}
        tensors = _half(base, "net")
        if recipe.base:
            config["refiner_arch"] = recipe.arch
            tensors.update(_half(net, "refiner"))
        tensors["tables.counts"] = torch.from_numpy(coder.counts.astype(np.int32))
        tensors["tables.steps"] = torch.from_numpy(steps)
        split = ("MNIST t10k images 0-7999 (the 60k training file is not available here); "
                 "validation on images 8000-9999") if recipe.dataset == "mnist" else \
            "Fashion-MNIST train (60,000); validation on its test split (10,000)"
        training["data"] = split
        if recipe.base:
            training["inputs"] = f"reconstructions by {recipe.base} (unquantized codes), targets the originals"
    dest = WEIGHTS_DIR / f"{recipe.model_id}.safetensors"
    architecture = PAPERS[recipe.arch] + (f"; refines the output of {recipe.base}" if recipe.base else "")
    sha = _save(dest, tensors, config, recipe.model_id, architecture)
    write_card(WEIGHTS_DIR, recipe.model_id, sha, {
        "architecture": architecture,
        "family": config["family"],
        "parameters": sum(p.numel() for p in net.parameters()),
        "training": training,
        "measured": {},
    })
    print(f"wrote {dest} ({dest.stat().st_size / 1e3:.0f} kB, sha256 {sha[:16]}…)")
    return dest


__all__ = ["export", "step_table", "MNIST_TRAIN"]
