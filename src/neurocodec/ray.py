"""Cluster engine: the folder jobs of ``neurocodec.batch`` on Ray Data, for when one machine is not enough.

Install with ``pip install neurocodec[ray]``. Files are read and written by the workers, so on a
real cluster the source and output folders must be on storage every node sees (NFS, a mounted
bucket, ...); see docs/scaling.md. Each worker is an actor that loads the model once and then codes
batches of files with the same ``encode_one`` / ``decode_one`` as the local engine, so both engines
write identical files at effort 0 (the search's bytes at efforts 1 and 2 depend on each worker's thread count). When the cluster has GPUs, each actor takes one and runs the transforms
there (the bitstream stays readable everywhere: the entropy model is computed exactly on the CPU).

``import ray`` below is the Ray package, not this module: imports are absolute in Python 3.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import ray

from . import batch
from .batch import Job, Kind, Outcome, Summary


class _Coder:
    """One Ray actor: the model and transforms are loaded in ``__init__``, once per worker."""

    def __init__(self, kind: Kind, options: dict[str, Any], threads: int):
        import torch

        from . import zoo
        from .codec import PhotoModel, model_transforms
        from .nets.inference import default_device

        torch.set_num_threads(threads)
        self.kind = kind
        self.options = dict(options)
        self.options["device"] = self.options.get("device") or default_device()
        if kind == "encode":
            model = zoo.load(zoo.resolve(self.options.get("model")))
            if isinstance(model, PhotoModel):
                model_transforms(model, self.options["device"])

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        one = batch.encode_one if self.kind == "encode" else batch.decode_one
        outcomes = [one(Job(Path(s), Path(d)), **self.options) for s, d in zip(rows["src"], rows["dst"])]
        return {
            "src": np.array([str(o.job.src) for o in outcomes]),
            "dst": np.array([str(o.job.dst) for o in outcomes]),
            "status": np.array([o.status for o in outcomes]),
            "error": np.array([o.error or "" for o in outcomes]),
            "bytes_in": np.array([o.bytes_in for o in outcomes], dtype=np.int64),
            "bytes_out": np.array([o.bytes_out for o in outcomes], dtype=np.int64),
            "pixels": np.array([o.pixels for o in outcomes], dtype=np.int64),
            "psnr": np.array([math.nan if o.psnr is None else o.psnr for o in outcomes]),
        }


def run(kind: Kind, jobs: list[Job], workers: int | None = None, batch_size: int = 4, **options) -> Summary:
    """Run ``jobs`` on the Ray cluster this process is connected to (``ray.init()`` is called if
    it is not: that joins ``RAY_ADDRESS`` when set, else starts a local instance). ``workers``
    actors (default: one per GPU, else one per CPU) each code ``batch_size`` files at a time."""
    if not jobs:
        return Summary()
    if not ray.is_initialized():
        ray.init()
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    workers = workers or gpus or max(1, int(resources.get("CPU", 1)))
    cpus = max(1, int(resources.get("CPU", 1)) // workers)
    if gpus and options.get("device") is None:
        options["device"] = "cuda"
    items = [{"src": str(j.src), "dst": str(j.dst)} for j in jobs]
    rows = (
        ray.data.from_items(items)
        .map_batches(
            _Coder, fn_constructor_kwargs={"kind": kind, "options": options, "threads": cpus},
            batch_size=batch_size, batch_format="numpy", concurrency=min(workers, len(jobs)),
            num_cpus=cpus if not gpus else 1, num_gpus=1 if gpus else 0,
        )
        .take_all()
    )
    outcomes = [
        Outcome(
            Job(Path(r["src"]), Path(r["dst"])), str(r["status"]), str(r["error"]) or None,
            int(r["bytes_in"]), int(r["bytes_out"]), int(r["pixels"]),
            None if math.isnan(r["psnr"]) else float(r["psnr"]),
        )
        for r in rows
    ]
    return Summary(sorted(outcomes, key=lambda o: str(o.job.src)))


def encode_dataset(
    paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, root: str | os.PathLike | None = None,
    quality: int = 75, model: str | None = None, force: bool = False, workers: int | None = None,
    effort: int = 0,
) -> Summary:
    """Encode image files on Ray into ``out_dir``, keeping their paths relative to ``root``
    (default: their common folder); already-encoded files are skipped unless ``force``."""
    jobs = _jobs(paths, out_dir, root, batch.NAC_SUFFIX)
    return run("encode", jobs, workers=workers, quality=quality, model=model, force=force, effort=effort)


def decode_dataset(
    paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, root: str | os.PathLike | None = None,
    ext: str = ".png", force: bool = False, workers: int | None = None,
) -> Summary:
    """Decode .nac files on Ray into ``out_dir`` as ``ext`` images, paths relative to ``root``."""
    return run("decode", _jobs(paths, out_dir, root, ext), workers=workers, force=force)


def _jobs(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, root: str | os.PathLike | None,
          suffix: str) -> list[Job]:
    srcs = [Path(p).absolute() for p in paths]
    if not srcs:
        return []
    base = Path(root).absolute() if root is not None else Path(os.path.commonpath([p.parent for p in srcs]))
    return [Job(p, dst) for p, dst in zip(srcs, batch.outputs([p.relative_to(base) for p in srcs], Path(out_dir), suffix))]
