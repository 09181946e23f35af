"""The shipped zoo as a whole: what every release must keep true of ``neurocodec/weights``."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

import neurocodec
from neurocodec import zoo

WEIGHTS_BUDGET_BYTES = 24_000_000  # the package's promise: all weights together at most 24 MB
SHIPPED = zoo.shipped()


def test_the_default_model_is_shipped():
    assert zoo.DEFAULT_MODEL in SHIPPED


def test_all_weights_together_fit_the_24_mb_budget():
    total = sum((zoo.WEIGHTS_DIR / f"{m}.safetensors").stat().st_size for m in SHIPPED)
    assert total <= WEIGHTS_BUDGET_BYTES, f"{total / 1e6:.2f} MB of weights"


def test_no_stray_weight_files_or_model_cards():
    weights = {p.stem for p in zoo.WEIGHTS_DIR.glob("*.safetensors")}
    cards = {p.stem for p in zoo.WEIGHTS_DIR.glob("*.json")} - {"retired"}
    assert weights == cards == set(SHIPPED)


@pytest.mark.parametrize("model_id", SHIPPED)
def test_network_parameters_are_stored_in_fp16(model_id):
    """Coding tables may be integer or float32 (they must be exact); learned parameters are fp16."""
    with safe_open(str(zoo.WEIGHTS_DIR / f"{model_id}.safetensors"), framework="pt") as f:
        wide = [k for k in f.keys() if not k.startswith("tables.") and f.get_slice(k).get_dtype() in ("F32", "F64")]
    assert wide == []


@pytest.mark.parametrize("model_id", SHIPPED)
def test_every_model_card_names_its_data_training_and_measured_figures(model_id):
    card = json.loads((zoo.WEIGHTS_DIR / f"{model_id}.json").read_text())
    assert card["model_id"] == model_id
    assert card["file"] == f"{model_id}.safetensors"
    assert card["training"]["data"]
    assert card["measured"], "a shipped model needs measured figures on its card"
    if "lambdas" in card:  # photo models: one weight file covers every trained lambda
        assert card["lambdas"] == card["config"]["lambdas"]
        assert card["training"]["steps"] > 0
    if "base" in card:  # a derived model: a post-filter on a shipped photo model
        assert card["base"] in SHIPPED and card["config"]["base"] == card["base"]
        assert card["config"]["base_sha256"] == zoo.card(card["base"])["sha256"]
        assert card["training"]["steps"] > 0


@pytest.mark.parametrize("model_id", SHIPPED)
def test_every_shipped_model_loads_and_matches_its_recorded_digest(model_id):
    model = zoo.load(model_id)
    assert model.digest == bytes.fromhex(zoo.card(model_id)["sha256"])[:8]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_retired_models_are_not_shipped_and_say_where_their_weights_are():
    for model_id, entry in zoo.retired().items():
        assert model_id not in SHIPPED
        assert len(bytes.fromhex(entry["sha256"])) == 32 and len(bytes.fromhex(entry["revision"])) == 20
        assert _version(entry["last_shipped_in"]) < _version(entry["retired_in"]) <= _version(neurocodec.__version__)
