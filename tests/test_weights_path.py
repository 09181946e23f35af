"""Models outside the package: folders on $NEUROCODEC_WEIGHTS_PATH and retired models.

Files name their model by ID for ever, but the package can ship only 24 MB of weights; these
tests pin down how a user decodes a file whose model left the package, and that such a folder
can add models without ever replacing a shipped one.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

import neurocodec
from neurocodec import zoo
from neurocodec.errors import NacModelError
from neurocodec.nets import build
from neurocodec.nets.hyperprior import HyperpriorConfig
from neurocodec.train.export import export, write_card

from conftest import photo_like


@pytest.fixture
def fresh_zoo(monkeypatch):
    zoo.load.cache_clear()
    yield monkeypatch
    zoo.load.cache_clear()


def _export_tiny(folder, model_id: str) -> str:
    torch.manual_seed(0)
    net = build(HyperpriorConfig(n=8, m=12, lambdas=(0.01, 0.1))).eval()
    sha = export(net, folder / f"{model_id}.safetensors", model_id)
    write_card(folder, model_id, sha, {"config": {}})
    return sha


def _retire(fresh_zoo, tmp_path, entries: dict) -> None:
    """A package folder that ships nothing and lists ``entries`` as retired."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "retired.json").write_text(json.dumps(entries))
    fresh_zoo.setattr(zoo, "WEIGHTS_DIR", package)


def test_a_model_in_a_folder_on_the_weights_path_encodes_and_decodes(fresh_zoo, tmp_path):
    _export_tiny(tmp_path, "ext-tiny")
    fresh_zoo.setenv(zoo.PATH_VARIABLE, f"{tmp_path / 'missing'}{os.pathsep}{tmp_path}")
    assert "ext-tiny" in neurocodec.models()
    assert "ext-tiny" not in zoo.shipped()
    pixels = photo_like(16, 24)
    data = neurocodec.encode(pixels, quality=50, model="ext-tiny")
    assert np.asarray(neurocodec.decode(data)).shape == pixels.shape


def test_neither_the_current_folder_nor_relative_entries_are_searched(fresh_zoo, tmp_path):
    _export_tiny(tmp_path, "ext-tiny")
    fresh_zoo.chdir(tmp_path)
    fresh_zoo.setenv(zoo.PATH_VARIABLE, f"{os.pathsep}.{os.pathsep}{tmp_path.name}")
    assert "ext-tiny" not in neurocodec.models()
    with pytest.raises(NacModelError, match="unknown model 'ext-tiny'"):
        zoo.load("ext-tiny")


def test_a_broken_model_card_on_the_path_is_a_model_error(fresh_zoo, tmp_path):
    _export_tiny(tmp_path, "ext-tiny")
    fresh_zoo.setenv(zoo.PATH_VARIABLE, str(tmp_path))
    for text in ("{not json", "[1, 2]", '{"model_id": "ext-tiny"}'):
        (tmp_path / "ext-tiny.json").write_text(text)
        zoo.load.cache_clear()
        with pytest.raises(NacModelError, match="model card .*ext-tiny.json"):
            zoo.load("ext-tiny")


def test_a_folder_on_the_weights_path_never_replaces_a_shipped_model(fresh_zoo, tmp_path):
    shipped = zoo.DEFAULT_MODEL
    shutil.copy(zoo.WEIGHTS_DIR / f"{shipped}.json", tmp_path / f"{shipped}.json")
    (tmp_path / f"{shipped}.safetensors").write_bytes(b"not weights")
    fresh_zoo.setenv(zoo.PATH_VARIABLE, str(tmp_path))
    assert zoo.load(shipped).digest == bytes.fromhex(zoo.card(shipped)["sha256"])[:8]


def test_a_retired_model_names_the_release_that_ships_it_and_the_variable(fresh_zoo, tmp_path):
    _retire(fresh_zoo, tmp_path, {"old-model": {
        "sha256": "ab" * 32, "retired_in": "0.2.0", "last_shipped_in": "0.1.0", "revision": "0123456789abcdef"}})
    fresh_zoo.delenv(zoo.PATH_VARIABLE, raising=False)
    with pytest.raises(NacModelError, match=r"'old-model' was retired in neurocodec 0\.2\.0.*0\.1\.0.*"
                                            r"0123456789ab.*NEUROCODEC_WEIGHTS_PATH"):
        zoo.load("old-model")


def test_a_retired_model_decodes_again_from_its_original_files(fresh_zoo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    sha = _export_tiny(outside, "old-model")
    fresh_zoo.setenv(zoo.PATH_VARIABLE, str(outside))
    pixels = photo_like(16, 24)
    data = neurocodec.encode(pixels, quality=30, model="old-model")
    before = np.asarray(neurocodec.decode(data))

    _retire(fresh_zoo, tmp_path, {"old-model": {
        "sha256": sha, "retired_in": "0.2.0", "last_shipped_in": "0.1.0", "revision": "0" * 40}})
    zoo.load.cache_clear()
    np.testing.assert_array_equal(np.asarray(neurocodec.decode(data)), before)


def test_a_retired_model_decodes_but_encodes_no_new_files(fresh_zoo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    sha = _export_tiny(outside, "old-model")
    _retire(fresh_zoo, tmp_path, {"old-model": {
        "sha256": sha, "retired_in": "0.2.0", "last_shipped_in": "0.1.0", "revision": "0" * 40}})
    fresh_zoo.setenv(zoo.PATH_VARIABLE, str(outside))
    with pytest.raises(NacModelError, match="'old-model' is retired: it decodes old files but encodes no new ones"):
        neurocodec.encode(photo_like(16, 24), model="old-model")


def test_other_weights_under_a_retired_models_name_are_refused(fresh_zoo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _export_tiny(outside, "old-model")
    _retire(fresh_zoo, tmp_path, {"old-model": {
        "sha256": "ab" * 32, "retired_in": "0.2.0", "last_shipped_in": "0.1.0", "revision": "0" * 40}})
    fresh_zoo.setenv(zoo.PATH_VARIABLE, str(outside))
    with pytest.raises(NacModelError, match="other weights under its name"):
        zoo.load("old-model")
