"""Training images: a folder of photos, split deterministically into train and held-out parts.

The split is by sorted file name (every ``holdout_every``-th file is held out), so any machine
that has the same folder makes the same split, and held-out images never reach the optimizer.
Images are decoded once and kept as uint8 tensors on the training device; random crops are
cut there, which keeps a GPU busy without a data-loader process.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def image_files(folder: str | Path) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


def split(files: list[Path], holdout_every: int) -> tuple[list[Path], list[Path]]:
    """(train, held_out): every ``holdout_every``-th file (index % n == n-1) is held out."""
    if holdout_every <= 0:
        return files, []
    held = [f for i, f in enumerate(files) if i % holdout_every == holdout_every - 1]
    train = [f for i, f in enumerate(files) if i % holdout_every != holdout_every - 1]
    return train, held


def evaluation_images(files: list[Path], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Each file as a (1, 3, h, w) float tensor in [0, 1], cropped to a multiple of 64 (the
    model's stride) from the top left: how held-out photos are scored by the trainer and the
    benchmarks that repeat its estimate."""
    images = []
    for f in files:
        x = load_rgb(f).float().div(255).unsqueeze(0).to(device)
        images.append(x[:, :, : x.shape[2] // 64 * 64, : x.shape[3] // 64 * 64])
    return images


def load_rgb(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def smooth_patch(crop: int, gen: torch.Generator) -> torch.Tensor:
    """A (3, crop, crop) uint8 patch of one random colour, half the time with a linear ramp of up
    to 48 levels per channel across it in a random direction, rounded to 8 bits like a rendered
    gradient.

    Photos almost never hold a region without noise, so nothing in them teaches the hyperprior
    what a perfectly flat area's latents look like: r15 spends 43,696 bytes on a flat grey
    2048x2048 image at quality 75 (r11: 13,516), nearly all on three channels whose anchors its
    hyperprior mispredicts by one to three steps. A few such patches among the photo crops show
    it flat and smoothly shaded areas (screenshots, graphics, skies, studio backdrops)."""
    colour = torch.rand(3, 1, 1, generator=gen) * 255
    patch = colour.expand(3, crop, crop).clone()
    if torch.rand(1, generator=gen).item() < 0.5:
        angle = torch.rand(1, generator=gen).item() * 2 * math.pi
        ramp = torch.linspace(-0.5, 0.5, crop)
        cos, sin = math.cos(angle), math.sin(angle)
        plane = (cos * ramp[None, :] + sin * ramp[:, None]) / (abs(cos) + abs(sin))  # spans [-0.5, 0.5]
        amplitude = (torch.rand(3, 1, 1, generator=gen) * 2 - 1) * 48
        patch = patch + amplitude * plane
    return patch.round().clamp(0, 255).to(torch.uint8)


class CropSampler:
    """Random crops with horizontal and vertical flips from images held in memory; with
    ``smooth_fraction`` > 0, that share of the crops is ``smooth_patch``es instead."""

    def __init__(self, files: list[Path], crop: int, device: torch.device, seed: int,
                 smooth_fraction: float = 0.0):
        if not 0.0 <= smooth_fraction < 1.0:
            raise ValueError(f"smooth_fraction must be in [0, 1), got {smooth_fraction}")
        images = [load_rgb(f) for f in files]
        self.images = [im.to(device) for im in images if min(im.shape[1:]) >= crop]
        if not self.images:
            raise ValueError(f"no training image is at least {crop}x{crop} pixels")
        self.crop = crop
        self.smooth_fraction = smooth_fraction
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, batch: int) -> torch.Tensor:
        crops = []
        c = self.crop
        idx = torch.randint(len(self.images), (batch,), generator=self.gen).tolist()
        for i in idx:
            # drawn only when enabled, so runs without it keep their crop sequence
            if self.smooth_fraction and torch.rand(1, generator=self.gen).item() < self.smooth_fraction:
                crops.append(smooth_patch(c, self.gen).to(self.images[0].device))
                continue
            im = self.images[i]
            top = int(torch.randint(im.shape[1] - c + 1, (1,), generator=self.gen))
            left = int(torch.randint(im.shape[2] - c + 1, (1,), generator=self.gen))
            patch = im[:, top : top + c, left : left + c]
            flips = torch.randint(2, (2,), generator=self.gen).tolist()
            if flips[0]:
                patch = patch.flip(2)
            if flips[1]:
                patch = patch.flip(1)
            crops.append(patch)
        return torch.stack(crops).float().div_(255.0)
