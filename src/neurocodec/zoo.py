"""Model IDs -> verified weights, ready-to-code models, loaded once per process.

Each model is a pair of files: ``ID.safetensors`` (fp16 parameters and coding tables) and
``ID.json`` (its model card: data, steps, lambdas, measured figures, and the SHA-256 the weights
must have). Loading goes through safetensors only (no pickle) and refuses a file whose digest
differs from the card's.

The package ships its pairs in ``neurocodec/weights``. The weights budget (24 MB) cannot hold
every model a ``.nac`` file may name, so older models are *retired*: ``weights/retired.json``
records each one's digest and where its files last shipped, and a user who still has such files
puts them in a folder named by ``$NEUROCODEC_WEIGHTS_PATH`` (``os.pathsep``-separated). The
package folder is searched first, so such a folder adds models but never replaces a shipped one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np


from .entropy import FactorizedCoder, GaussianCoder
from .errors import NacModelError
from .nets import build as build_net
from .nets.hyperprior import EXACT_SUM_LIMIT, HyperpriorConfig, MeanScaleHyperprior
from .nets.postfilter import PostFilter, PostFilterConfig

if TYPE_CHECKING:
    from .papers import PaperModel

WEIGHTS_DIR = Path(__file__).parent / "weights"
PATH_VARIABLE = "NEUROCODEC_WEIGHTS_PATH"
DEFAULT_MODEL = "photo-cb64-m224-r15-pf4"


@dataclass(frozen=True)
class PhotoModel:
    """A mean-scale hyperprior with its coders; ``digest`` is what ``.nac`` headers record.

    A *derived* model (``postfilter`` set) shares its base model's network and coders, so it
    writes the base's bitstream under its own ID, and its decoder runs ``postfilter`` on g_s's
    output. Its file holds the filter alone and names the base by ID and SHA-256: the package
    ships one copy of the base's 10 MB whatever filters sit on top of it."""

    model_id: str
    digest: bytes
    net: MeanScaleHyperprior
    z_coder: FactorizedCoder
    y_coder: GaussianCoder
    card: dict
    postfilter: PostFilter | None = None

    @property
    def levels(self) -> int:
        return self.net.config.levels


def folders() -> list[Path]:
    """Where model files are looked up, in order: the package's folder, then the absolute folders
    of $NEUROCODEC_WEIGHTS_PATH (relative entries are ignored: which models exist must not depend
    on the current directory)."""
    extra = (Path(p).expanduser() for p in os.environ.get(PATH_VARIABLE, "").split(os.pathsep) if p)
    return [WEIGHTS_DIR] + [p for p in extra if p.is_absolute()]


def _pairs(folder: Path) -> list[str]:
    """IDs with both files (card and weights) in ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.safetensors").is_file())


def _index() -> dict[str, Path]:
    """Model ID -> the first folder holding both of its files."""
    found: dict[str, Path] = {}
    for folder in folders():
        for model_id in _pairs(folder):
            found.setdefault(model_id, folder)
    return found


def shipped() -> list[str]:
    """IDs of the models in the package itself."""
    return _pairs(WEIGHTS_DIR)


def available() -> list[str]:
    """IDs of the models this installation can load: shipped ones and those on $NEUROCODEC_WEIGHTS_PATH."""
    return sorted(_index())


def retired() -> dict[str, dict]:
    """Models the package no longer ships: ID -> {sha256, retired_in, last_shipped_in, revision}."""
    return _retired_in(WEIGHTS_DIR)


@functools.lru_cache(maxsize=4)
def _retired_in(folder: Path) -> dict[str, dict]:
    """Read once per process: ``resolve`` asks on every encode (per file in a folder run)."""
    path = folder / "retired.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _folder(model_id: str) -> Path:
    folder = _index().get(model_id)  # never a path: an ID read from a file must not pick the folder
    if folder is not None:
        return folder
    gone = retired().get(model_id)
    if gone is not None:
        raise NacModelError(
            f"model {model_id!r} was retired in neurocodec {gone['retired_in']}, so this installation "
            f"lacks its weights: decode with neurocodec {gone['last_shipped_in']}, or put {model_id}.json "
            f"and {model_id}.safetensors (SHA-256 {gone['sha256'][:16]}…) from that release, or from "
            f"src/neurocodec/weights/ at git revision {gone['revision'][:12]} of neurocodec, in a folder "
            f"and set the environment variable {PATH_VARIABLE} to that folder"
        )
    known = ", ".join(available()) or "none"
    raise NacModelError(f"unknown model {model_id!r} (available: {known})")


def weights_file(model_id: str) -> Path:
    """Where the installed weights of ``model_id`` are (its card lies beside them), for tools that
    read the file itself, such as a training start (``train.export.trainable_state``)."""
    return _folder(model_id) / f"{model_id}.safetensors"


def _read_card(folder: Path, model_id: str) -> dict:
    path = folder / f"{model_id}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NacModelError(f"model card {path} is unreadable: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str):
        raise NacModelError(f"model card {path} records no SHA-256 for its weights")
    return data


def card(model_id: str) -> dict:
    return _read_card(_folder(model_id), model_id)


def _ragged(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    ends = np.cumsum(lengths)
    return [flat[e - n : e].astype(np.float64) for e, n in zip(ends, lengths)]


def load(model_id: str = DEFAULT_MODEL) -> "Model":
    """The model ``model_id``, read and verified once per process (``load()`` and
    ``load(DEFAULT_MODEL)`` are the same object). Its tensors are ordinary ones even when the
    first call comes from inside ``torch.inference_mode`` (``codec.decode``), so a model a decode
    loaded can still be differentiated through by the encoder's search (``refine``)."""
    import torch

    with torch.inference_mode(False):
        return _load(model_id)


@functools.lru_cache(maxsize=8)
def _load(model_id: str) -> "Model":
    from safetensors import safe_open

    folder = _folder(model_id)  # both files from the same folder
    meta_card = _read_card(folder, model_id)
    path = folder / f"{model_id}.safetensors"
    blob = path.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    if sha != meta_card["sha256"]:
        raise NacModelError(
            f"weights file {path.name} has SHA-256 {sha[:16]}…, its model card records "
            f"{meta_card['sha256'][:16]}…: the file was modified or damaged"
        )
    gone = retired().get(model_id)
    if gone is not None and sha != gone["sha256"]:
        raise NacModelError(
            f"weights file {path} has SHA-256 {sha[:16]}…, but retired model '{model_id}' shipped as "
            f"{gone['sha256'][:16]}…: these are other weights under its name"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    digest = bytes.fromhex(sha)[:8]
    if cfg.get("family") == "postfilter":
        return _derived(model_id, digest, meta_card, cfg, tensors, path.name)
    if cfg.get("family", "hyperprior") != "hyperprior":
        from . import papers

        return papers.build(model_id, digest, meta_card, cfg, tensors)
    cfg["lambdas"] = tuple(cfg["lambdas"])
    try:
        net = build_net(HyperpriorConfig(**cfg))
    except (TypeError, ValueError) as e:
        raise NacModelError(f"weights file {path.name} has an unusable config: {e}") from None
    params = {k: v.float() for k, v in tensors.items() if not k.startswith("tables.")}
    missing, unexpected = net.load_state_dict(params, strict=False)
    if unexpected or any(not k.startswith("z_density.") for k in missing):
        raise NacModelError(f"weights file {path.name} does not match its architecture")
    net.eval().requires_grad_(False)
    bound = net.fixed_point_bound()
    if bound >= EXACT_SUM_LIMIT:
        raise NacModelError(
            f"weights file {path.name} makes entropy-parameter sums reach {bound} grid units, "
            f"beyond the exact float64 range 2^53: entropy parameters would not be reproducible"
        )
    t = {k: v.numpy() for k, v in tensors.items() if k.startswith("tables.")}
    z_coder = FactorizedCoder(t["tables.z_offsets"], _ragged(t["tables.z_pmfs"], t["tables.z_lengths"]))
    y_coder = GaussianCoder(t["tables.y_scales"], t["tables.y_radii"], _ragged(t["tables.y_pmfs"], t["tables.y_lengths"]))
    return PhotoModel(model_id, digest, net, z_coder, y_coder, meta_card)


def _derived(model_id: str, digest: bytes, meta_card: dict, cfg: dict, tensors: dict, name: str) -> PhotoModel:
    """A base photo model with a post-filter (see ``PhotoModel``); the base must be installed
    with exactly the weights the filter was trained on."""
    base_id = cfg.get("base")
    if not isinstance(base_id, str) or base_id == model_id:
        raise NacModelError(f"weights file {name} names no usable base model")
    base = _load(base_id)
    if not isinstance(base, PhotoModel) or base.postfilter is not None:
        raise NacModelError(f"weights file {name}: base model {base_id!r} is not a plain photo model")
    if _read_card(_folder(base_id), base_id)["sha256"] != cfg.get("base_sha256"):
        raise NacModelError(f"weights file {name} was trained on other weights of {base_id!r} than the installed ones")
    try:
        net = PostFilter(PostFilterConfig(channels=cfg["channels"], depth=cfg["depth"], levels=cfg["levels"]))
        if net.config.levels != base.levels:
            raise ValueError(f"{net.config.levels} levels, base has {base.levels}")
        net.load_state_dict({k: v.float() for k, v in tensors.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise NacModelError(f"weights file {name} has an unusable post-filter: {e}") from None
    net.eval().requires_grad_(False)
    return replace(base, model_id=model_id, digest=digest, card=meta_card, postfilter=net)


load.cache_clear = _load.cache_clear  # type: ignore[attr-defined]  # tests swap zoos in and out


Model = Union[PhotoModel, "PaperModel"]


def resolve(model_id: str | None) -> str:
    """The model to encode with: ``model_id`` or the default. A retired model still decodes (from
    $NEUROCODEC_WEIGHTS_PATH) but writes no new files: they would need weights users lack."""
    if model_id == "":
        raise ValueError("the model ID is empty (leave it out for the default)")
    if model_id in retired():
        raise NacModelError(f"model {model_id!r} is retired: it decodes old files but encodes no new ones "
                            f"(shipped models: {', '.join(shipped())})")
    return model_id or DEFAULT_MODEL

