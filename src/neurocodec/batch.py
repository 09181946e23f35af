"""Folders: encode every image under a folder to .nac (or decode every .nac), in parallel, resumably.

A batch is a list of ``Job``s (one source file, one output path that mirrors the source's place in
the tree). Each job runs on its own and reports an ``Outcome`` instead of raising, so one broken
file never stops the others; the ``Summary`` collects them. A job whose output already exists, is
newer than its source and reads back as valid is skipped, which makes an interrupted batch resume
where it stopped (outputs are written atomically, so a half-written one never exists).

The same job functions run under a local process pool (``run``) or on a Ray cluster
(``neurocodec.ray``), so both engines write identical files (at effort 0: the search's bytes at
efforts 1 and 2 depend on the thread count, which differs with the number of workers).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Literal

from PIL import Image

if TYPE_CHECKING:
    from .container import Limits

Kind = Literal["encode", "decode"]
NAC_SUFFIX = ".nac"


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


@dataclass(frozen=True)
class Outcome:
    """What happened to one job; ``pixels`` and ``psnr`` are known only for files coded this run."""

    job: Job
    status: Literal["done", "skipped", "failed"]
    error: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    psnr: float | None = None


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)

    def _with(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[Outcome]:
        return self._with("done")

    @property
    def skipped(self) -> list[Outcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[Outcome]:
        return self._with("failed")

    def lines(self, kind: Kind) -> list[str]:
        """The human summary: counts, bytes before and after, mean bpp and PSNR, then each failure."""
        done = self.done
        out = [f"{len(self.outcomes)} files: {len(done)} {kind}d, {len(self.skipped)} skipped "
               f"(already done), {len(self.failed)} failed"]
        if done:
            before, after = sum(o.bytes_in for o in done), sum(o.bytes_out for o in done)
            out.append(f"bytes: {before:,} -> {after:,} ({after / max(before, 1):.1%})")
            nac_bytes = [o.bytes_out if kind == "encode" else o.bytes_in for o in done]
            bpp = [8 * n / o.pixels for n, o in zip(nac_bytes, done) if o.pixels]
            line = f"mean {sum(bpp) / len(bpp):.3f} bpp" if bpp else ""
            psnr = [o.psnr for o in done if o.psnr is not None]
            if psnr:
                line += f", mean PSNR {sum(psnr) / len(psnr):.2f} dB"
            if line:
                out.append(line)
        out += [f"failed: {o.job.src}: {o.error}" for o in self.failed]
        return out


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in Image.registered_extensions() and path.suffix.lower() != NAC_SUFFIX


def plan(kind: Kind, src_dir: Path, out_dir: Path, ext: str = ".png") -> list[Job]:
    """Jobs for every image (encode) or .nac file (decode) under ``src_dir``, in sorted order;
    outputs keep their relative paths under ``out_dir``, with suffix ``.nac`` or ``ext``. Sources
    that would share an output (``a.png`` and ``a.jpg``, both ``a.nac``) each keep their own
    suffix in it (``a.png.nac``, ``a.jpg.nac``), so no file overwrites or skips another."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise NotADirectoryError(f"not a folder: {src_dir}")
    wanted = _is_image if kind == "encode" else (lambda p: p.suffix.lower() == NAC_SUFFIX)
    suffix = NAC_SUFFIX if kind == "encode" else ext
    sources = [p for p in sorted(src_dir.rglob("*")) if p.is_file() and wanted(p)
               and out_dir.resolve() not in p.resolve().parents]  # outputs inside the tree are not inputs
    return [Job(src, dst) for src, dst in zip(sources, outputs([s.relative_to(src_dir) for s in sources], out_dir, suffix))]


def outputs(sources: list[Path], out_dir: Path, suffix: str) -> list[Path]:
    """One output path per source (relative paths under ``out_dir``), all distinct even on a
    case-insensitive disk: ``a.png`` alone becomes ``a.nac``; sources sharing that name keep their
    own suffix (``a.png.nac``, ``a.jpg.nac``), and a name still taken gets a counter (``a.png-2.nac``)."""
    plain = [out_dir / s.with_suffix(suffix) for s in sources]
    shared = {str(d).casefold() for d, n in Counter(str(p).casefold() for p in plain).items() if n > 1}
    taken: set[str] = set()
    out = []
    for src, dst in zip(sources, plain):
        if str(dst).casefold() in shared:
            dst = dst.with_name(src.name + suffix)
        stem, n = dst.name[: -len(suffix)] if suffix else dst.name, 1
        while str(dst).casefold() in taken:
            n += 1
            dst = dst.with_name(f"{stem}-{n}{suffix}")
        taken.add(str(dst).casefold())
        out.append(dst)
    return out


def _up_to_date(job: Job, kind: Kind) -> bool:
    """The output exists, is not older than its source, and reads back (header or image)."""
    try:
        if job.dst.stat().st_mtime < job.src.stat().st_mtime:
            return False
        if kind == "encode":
            from . import container

            container.unpack(job.dst.read_bytes())
        else:
            with Image.open(job.dst) as im:
                im.verify()
        return True
    except (OSError, ValueError, SyntaxError):
        return False


def encode_one(job: Job, quality: int = 75, model: str | None = None, force: bool = False,
               device: str | None = None, effort: int = 0) -> Outcome:
    """Encode one image file to its .nac, reporting (not raising) any error."""
    if not force and _up_to_date(job, "encode"):
        return Outcome(job, "skipped")
    try:
        from . import codec, io, metrics, zoo

        pic = io.load(job.src)
        enc = codec.encode(pic, quality, zoo.load(zoo.resolve(model)), reconstruct=True, device=device,
                           effort=effort)
        job.dst.parent.mkdir(parents=True, exist_ok=True)
        io.atomic_write(job.dst, enc.data, force=True, source=job.src)
        return Outcome(job, "done", bytes_in=job.src.stat().st_size, bytes_out=len(enc.data),
                       pixels=pic.width * pic.height, psnr=metrics.psnr(pic.color, enc.reconstruction.color))
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
        return Outcome(job, "failed", error=f"{type(e).__name__}: {e}")


def decode_one(job: Job, force: bool = False, device: str | None = None, limits: Limits | None = None) -> Outcome:
    """Decode one .nac file to the image format its output suffix names, reporting any error;
    ``limits``: what the reader refuses (default: ``container.DEFAULT_LIMITS``)."""
    if not force and _up_to_date(job, "decode"):
        return Outcome(job, "skipped")
    try:
        from . import codec, io

        data = job.src.read_bytes()
        image = codec.decode(data, limits or codec.container.DEFAULT_LIMITS, device=device).to_pil()
        out = io.image_bytes(image, job.dst)
        job.dst.parent.mkdir(parents=True, exist_ok=True)
        io.atomic_write(job.dst, out, force=True, source=job.src)
        return Outcome(job, "done", bytes_in=len(data), bytes_out=len(out), pixels=image.width * image.height)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
        return Outcome(job, "failed", error=f"{type(e).__name__}: {e}")


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run(
    kind: Kind, jobs: list[Job], workers: int | None = None, progress: bool | None = None,
    **options,
) -> Summary:
    """Run ``jobs`` with ``workers`` processes (1: in this process), each with its share of the
    torch threads so the pool does not oversubscribe the cores; ``options`` go to ``encode_one``
    or ``decode_one``. ``progress``: a tqdm bar on stderr (``None``: only on a terminal)."""
    from tqdm import tqdm

    workers = workers or default_workers()
    one: Callable[..., Outcome] = encode_one if kind == "encode" else decode_one
    bar = tqdm(total=len(jobs), unit="file", desc=kind, disable=None if progress is None else not progress)
    summary = Summary()
    with bar:
        for outcome in _map(one, jobs, workers, options):
            summary.outcomes.append(outcome)
            bar.update()
    summary.outcomes.sort(key=lambda o: str(o.job.src))
    return summary


def _map(one: Callable[..., Outcome], jobs: list[Job], workers: int, options: dict) -> Iterable[Outcome]:
    if workers == 1 or len(jobs) <= 1:
        yield from (one(job, **options) for job in jobs)
        return
    import torch

    threads = max(1, torch.get_num_threads() // workers)
    # spawn, not fork: a forked child of a process whose OpenMP pool is running can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(
        min(workers, len(jobs)), mp_context=context, initializer=_init_worker, initargs=(threads,)
    )
    try:
        futures = [pool.submit(one, job, **options) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()
    finally:  # on Ctrl-C, drop the queued files instead of finishing them; done ones are kept
        pool.shutdown(wait=True, cancel_futures=True)
