"""Shared fixtures: small synthetic images, so the suite needs nothing outside the repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

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


@pytest.fixture(scope="session", autouse=True)
def _only_the_package_weights():
    """The suite sees the package's models only; a developer's own $NEUROCODEC_WEIGHTS_PATH
    (README: where retired models' files go) must not change what it tests."""
    from neurocodec import zoo

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(zoo.PATH_VARIABLE, raising=False)
        yield


@pytest.fixture(scope="session")
def retired_weights_dir(tmp_path_factory) -> Path | None:
    """A folder with every retired model's two files, taken with ``git show`` from the revision
    that last shipped them, as a user who kept those files would have them; None when the
    checkout has no such history (an sdist, a shallow clone)."""
    from neurocodec import zoo

    repo = Path(__file__).resolve().parents[1]
    folder = tmp_path_factory.mktemp("retired-weights")
    for model_id, entry in zoo.retired().items():
        for ext in ("json", "safetensors"):
            spec = f"{entry['revision']}:src/neurocodec/weights/{model_id}.{ext}"
            try:
                blob = subprocess.run(["git", "-C", str(repo), "show", spec], capture_output=True, check=True).stdout
            except (OSError, subprocess.CalledProcessError):
                return None
            (folder / f"{model_id}.{ext}").write_bytes(blob)
    return folder


@pytest.fixture
def retired_weights(retired_weights_dir, monkeypatch) -> set[str]:
    """The retired models' files on $NEUROCODEC_WEIGHTS_PATH (formats/nac.md, Versioning), as a
    user who kept them would set it up; yields the retired IDs. Skips without git history."""
    from neurocodec import zoo

    if retired_weights_dir is None:
        pytest.skip("retired weights need a git checkout with the revisions of weights/retired.json")
    monkeypatch.setenv(zoo.PATH_VARIABLE, str(retired_weights_dir))
    zoo.load.cache_clear()
    yield set(zoo.retired())
    zoo.load.cache_clear()
