"""Shared fixtures: small synthetic images, so the suite needs nothing outside the repository."""

from __future__ import annotations

import numpy as np
import pytest


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients, a few edges and mild noise: the statistics a photo codec is built for."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([
        120 + 80 * np.sin(xx / 17.0 + seed) * np.cos(yy / 23.0),
        100 + 0.6 * xx * 255 / max(w, 1) * 0.5 + 40 * np.cos(yy / 9.0),
        90 + 70 * np.sin((xx + yy) / 31.0),
    ], axis=2)
    img[h // 4 : h // 2, w // 3 : 2 * w // 3] += 60  # an edge
    img += rng.normal(0, 4, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture
def rgb() -> np.ndarray:
    return photo_like(64, 96)


@pytest.fixture
def small_nac(rgb) -> bytes:
    import neurocodec

    return neurocodec.encode(rgb[:32, :40], quality=20)


@pytest.fixture
def install_model(tmp_path, monkeypatch):
    """``install_model(net, model_id)``: export ``net`` into a temporary zoo and load it by ID, as
    the codec would load a shipped model (the zoo's cache is cleared around it)."""
    from neurocodec import zoo
    from neurocodec.train.export import export, write_card

    def install(net, model_id: str):
        dest = tmp_path / "weights"
        sha = export(net, dest / f"{model_id}.safetensors", model_id)
        write_card(dest, model_id, sha, {"config": {}})
        monkeypatch.setattr(zoo, "WEIGHTS_DIR", dest)
        zoo.load.cache_clear()
        return zoo.load(model_id)

    yield install
    zoo.load.cache_clear()
