"""Training images: a folder of photos, split deterministically into train and held-out parts.

The split is by sorted file name (every ``holdout_every``-th file is held out), so any machine
that has the same folder makes the same split, and held-out images never reach the optimizer.
Images are decoded once and kept as uint8 tensors on the training device; random crops are
cut there, which keeps a GPU busy without a data-loader process.
"""

from __future__ import annotations

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


class CropSampler:
    """Random crops with horizontal and vertical flips from images held in memory."""

    def __init__(self, files: list[Path], crop: int, device: torch.device, seed: int):
        images = [load_rgb(f) for f in files]
        self.images = [im.to(device) for im in images if min(im.shape[1:]) >= crop]
        if not self.images:
            raise ValueError(f"no training image is at least {crop}x{crop} pixels")
        self.crop = crop
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, batch: int) -> torch.Tensor:
        crops = []
        c = self.crop
        idx = torch.randint(len(self.images), (batch,), generator=self.gen).tolist()
        for i in idx:
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
