"""Image-quality metrics on 8-bit pixels, as the benchmark protocol defines them."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of equal shape (inf when identical)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM (Wang, Simoncelli, Bovik 2003) over RGB (or L) uint8 images, data range 255.

    Images smaller than the five-scale pyramid needs (161 px) use as many scales as fit.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[None]
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[None]
    c = x.shape[1]
    win = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    weights = list(_MS_WEIGHTS)
    values = []
    for scale in range(len(weights)):
        size = min(x.shape[2], x.shape[3], 11)
        w1 = _gaussian_window(size, 1.5) if size < 11 else win
        kh = w1.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
        kw = w1.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

        def blur(t):
            return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

        mx, my = blur(x), blur(y)
        sxx = blur(x * x) - mx * mx
        syy = blur(y * y) - my * my
        sxy = blur(x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if scale == len(weights) - 1 or min(x.shape[2], x.shape[3]) < 22:
            ssim = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs
            values.append(ssim.mean().clamp_min(0).item())
            weights = weights[: scale + 1]
            break
        values.append(cs.mean().clamp_min(0).item())
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    w = np.array(weights) / np.sum(weights)
    return float(np.prod(np.array(values) ** w))
