"""Training recipes for the papers' models, resumable per epoch, and their export to the zoo.

    python -m neurocodec.train.papers train paper-cae20-mnist --data ../shared/datasets/mnist
    python -m neurocodec.train.papers export paper-cae20-mnist

A recipe fixes what the paper fixes (architecture, data, loss, optimizer, epochs); a run folder
(``runs/<id>/``) holds ``ckpt.pt`` (weights, optimizer, epoch; never shipped) and ``log.jsonl``.
Only the 10k MNIST test split exists here, so MNIST models train on its first 8,000 images and
validate on the last 2,000; Fashion-MNIST uses its own 60k/10k split.
"""

from __future__ import annotations

import argparse
import gzip
import io as _io
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..nets.papers import ARCHITECTURES, DnCNN

MNIST_TRAIN = 8000


@dataclass(frozen=True)
class Recipe:
    model_id: str
    arch: str
    dataset: str  # "mnist", "fashion-mnist" or "photos"
    epochs: int
    batch: int = 128
    lr: float = 1e-3
    base: str | None = None  # a model whose reconstructions are this model's inputs
    note: str = ""


RECIPES = {
    r.model_id: r
    for r in (
        Recipe("paper-cae20-mnist", "cae20", "mnist", epochs=20),
        Recipe("paper-cae20-fmnist", "cae20", "fashion-mnist", epochs=20),
        Recipe("paper-denoise-fmnist", "cae20", "fashion-mnist", epochs=20, base="paper-cae20-fmnist"),
        Recipe("paper-fc196-mnist", "fc196", "mnist", epochs=50),
        Recipe("paper-cae28-mnist", "cae28", "mnist", epochs=20),
        # DnCNN: an "epoch" is 500 steps of 16 random 50x50 patches.
        Recipe("paper-dncnn", "dncnn", "photos", epochs=4, batch=16, lr=1e-3),
    )
}

DNCNN_DEPTH = 8
DNCNN_QUALITIES = (5, 10, 50, 90, 100)
DNCNN_STEPS_PER_EPOCH = 500
PATCH = 50


# ----- data ------------------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An IDX image file (optionally gzipped) as a uint8 array (N, 28, 28)."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if raw[:4] != b"\x00\x00\x08\x03":
        raise ValueError(f"{path} is not an IDX file of uint8 images (magic {raw[:4].hex()})")
    n, h, w = (int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(raw, np.uint8, n * h * w, 16).reshape(n, h, w)


def digit_split(dataset: str, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) uint8 arrays for "mnist" (8,000 / 2,000 of t10k) or "fashion-mnist"."""
    test = read_idx(_find(data, "t10k-images-idx3-ubyte"))
    if dataset == "mnist":
        return test[:MNIST_TRAIN], test[MNIST_TRAIN:]
    return read_idx(_find(data, "train-images-idx3-ubyte")), test


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{stem}[.gz] not found in {folder}")


def jpeg_pair(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``rgb`` compressed by Pillow's JPEG at ``quality`` and decoded again."""
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


class ArtifactPatches:
    """Random 50x50 (clean, JPEG-compressed) colour patch pairs from a folder of photos.

    Each draw picks an image, a JPEG quality from ``DNCNN_QUALITIES`` and a position; compressed
    versions are made once per (image, quality) and cached, so the 8x8 block grid of the crop is
    the one a real decoder would see.
    """

    def __init__(self, files: list[Path], seed: int):
        from .data import load_rgb

        self.images = [load_rgb(f).permute(1, 2, 0).numpy() for f in files]
        self.cache: dict[tuple[int, int], np.ndarray] = {}
        self.rng = random.Random(seed)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        clean, noisy = [], []
        for _ in range(batch):
            i = self.rng.randrange(len(self.images))
            q = self.rng.choice(DNCNN_QUALITIES)
            if (i, q) not in self.cache:
                self.cache[(i, q)] = jpeg_pair(self.images[i], q)
            im, jp = self.images[i], self.cache[(i, q)]
            top = self.rng.randrange(im.shape[0] - PATCH + 1)
            left = self.rng.randrange(im.shape[1] - PATCH + 1)
            clean.append(im[top : top + PATCH, left : left + PATCH])
            noisy.append(jp[top : top + PATCH, left : left + PATCH])
        to = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731
        return to(clean), to(noisy)


# ----- training --------------------------------------------------------------------------------
def build(recipe: Recipe) -> nn.Module:
    if recipe.arch == "dncnn":
        return DnCNN(depth=DNCNN_DEPTH)
    return ARCHITECTURES[recipe.arch]()


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)


@torch.no_grad()
def reconstruct_with(model_dir: Path, recipe: Recipe, x: torch.Tensor) -> torch.Tensor:
    """Unquantized reconstructions of ``x`` by the trained base model in ``model_dir``."""
    base = build(RECIPES[recipe.base])
    base.load_state_dict(torch.load(model_dir / "ckpt.pt", weights_only=True)["model"])
    base.eval()
    return torch.cat([base(x[i : i + 1000]).clamp(0, 1) for i in range(0, len(x), 1000)])


def train(recipe: Recipe, data: Path, out: Path, epochs: int | None, seed: int = 0, limit: int | None = None) -> Path:
    """Train (or resume) ``recipe`` in run folder ``out``; one checkpoint per epoch.

    ``limit`` trains on the first ``limit`` training images only (the log records how many).
    """
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    model = build(recipe)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    start = 0
    ckpt = out / "ckpt.pt"
    if recipe.base and not ckpt.exists():
        # The refiner starts as a copy of the base model (same architecture): from random weights
        # its 49-value bottleneck made reconstructions 3x worse than the base's after an epoch.
        base_state = torch.load(out.parent / recipe.base / "ckpt.pt", weights_only=True)["model"]
        model.load_state_dict(base_state)
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["epoch"]
    total = epochs or recipe.epochs
    gen = torch.Generator().manual_seed(seed + start)

    if recipe.dataset == "photos":
        from .data import image_files, split

        train_files, _ = split(image_files(data), holdout_every=16)
        sampler = ArtifactPatches(train_files, seed + start)
        steps = DNCNN_STEPS_PER_EPOCH
    else:
        train_u8, val_u8 = digit_split(recipe.dataset, data)
        train_u8 = train_u8[:limit] if limit else train_u8
        x_train, x_val = _as_tensor(train_u8), _as_tensor(val_u8)
        if recipe.base:
            base_dir = out.parent / recipe.base
            inputs, val_inputs = reconstruct_with(base_dir, recipe, x_train), reconstruct_with(base_dir, recipe, x_val)
        else:
            inputs, val_inputs = x_train, x_val
        steps = math.ceil(len(x_train) / recipe.batch)

    log = (out / "log.jsonl").open("a")
    for epoch in range(start, total):
        model.train()
        t0 = time.time()
        if recipe.dataset != "photos":
            order = torch.randperm(len(x_train), generator=gen)
        running = 0.0
        for step in tqdm(range(steps), desc=f"{recipe.model_id} epoch {epoch + 1}/{total}", leave=False):
            if recipe.dataset == "photos":
                target, inp = sampler.sample(recipe.batch)
                pred = model(inp)
                loss = nn.functional.mse_loss(pred, target)
            else:
                idx = order[step * recipe.batch : (step + 1) * recipe.batch]
                loss = nn.functional.mse_loss(model(inputs[idx]), x_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item()
        entry = {"epoch": epoch + 1, "train_mse": running / steps, "seconds": round(time.time() - t0, 1)}
        if recipe.dataset != "photos":
            model.eval()
            with torch.no_grad():
                val = torch.cat([model(val_inputs[i : i + 1000]) for i in range(0, len(val_inputs), 1000)])
            entry["val_mse"] = float(((val - x_val) ** 2).mean())
            entry["train_images"] = len(x_train)
        log.write(json.dumps(entry) + "\n")
        log.flush()
        tqdm.write(json.dumps(entry))
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1}, ckpt)
    return ckpt


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m neurocodec.train.papers", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["train", "export"])
    p.add_argument("model_id", choices=sorted(RECIPES))
    p.add_argument("--data", type=Path, help="dataset folder (mnist, fashion-mnist or photos-train)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run folders [runs]")
    p.add_argument("--epochs", type=int, help="total epochs [the recipe's]")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--limit", type=int, help="train on the first N training images only")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = RECIPES[args.model_id]
    run = args.runs / recipe.model_id
    if args.action == "train":
        if args.data is None:
            p.error("train needs --data")
        train(recipe, args.data, run, args.epochs, limit=args.limit)
    else:
        from .export_papers import export

        export(recipe, run, args.data)


if __name__ == "__main__":
    main()
