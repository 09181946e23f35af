"""The ``neurocodec`` command line: encode, decode, info, compare, models, enhance, train.

Exit codes: 0 success, 1 bad input or usage (one line on stderr, no traceback), 2 internal error,
130 after Ctrl-C during a command.
Outputs are written atomically and never overwrite an existing file without ``--force``; ``-``
as a source or output means standard input or output (reports then go to stderr).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # plain help: "[default: ...]" and "neurocodec[ray]" are text, not markup
    no_args_is_help=True,  # the help text is _root's docstring
    context_settings={"help_option_names": ["-h", "--help"]},
)

def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"neurocodec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """neurocodec: a learned image codec. Encode images to .nac files and back."""


DEFAULT_QUALITY = 75
QUALITY = typer.Option(None, "--quality", "-q", min=1, max=100,
                       help=f"1..100; higher means more bits and fidelity [default: {DEFAULT_QUALITY}].")
FORCE = typer.Option(False, "--force", "-f", help="Overwrite the output file if it exists (folders: redo every file).")
THREADS = typer.Option(None, "--threads", "-t", min=1, help="Torch threads (default: torch's choice, usually all cores).")
DEVICE = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available); any device reads any file.")
EFFORT = typer.Option(0, "--effort", "-e", min=0, max=2,  # len(refine.EFFORTS) - 1, tested; no torch import here
                      help="Encoder effort: 1 and 2 search the latents for a smaller file at the same quality "
                           "(on Kodak 7.7 % / 9.1 % fewer bits than 0 for about 3x / 6x the encoding time; "
                           "on the CPU); decoding is unchanged.")
ENGINE = typer.Option("local", "--engine", help="Folders: local (process pool) or ray (needs neurocodec[ray]).")
WORKERS = typer.Option(None, "--workers", "-j", min=1, help="Folders: parallel worker processes (default: min(cores, 4)).")


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _check_device(device: str | None) -> str | None:
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: torch sees no CUDA device")
    return device


def _folder(kind: str, src: Path, output: Optional[Path], engine: str, workers: Optional[int], ext: str = ".png",
            quiet: bool = False, **options) -> int:
    """Encode or decode a whole folder (decoded images get suffix ``ext``); exit status 1 if any
    file failed (the others are written). ``quiet``: report failures only."""
    from . import batch

    if output is None or str(output) == "-":
        raise ValueError(f"{kind} of a folder needs -o OUTDIR (a folder, not standard output)")
    if engine not in ("local", "ray"):
        raise ValueError(f"--engine must be local or ray, got {engine!r}")
    output.mkdir(parents=True, exist_ok=True)
    jobs = batch.plan(kind, src, output, ext)
    if engine == "ray":
        try:
            from . import ray as ray_engine
        except ImportError:
            raise ValueError("--engine ray needs Ray: pip install 'neurocodec[ray]'") from None
        summary = ray_engine.run(kind, jobs, workers=workers, **options)
    else:
        summary = batch.run(kind, jobs, workers=workers, **options)
    for line in summary.lines(kind):
        if not quiet or line.startswith("failed"):
            typer.echo(line, err=line.startswith("failed"))
    return 1 if summary.failed else 0


@app.command()
def encode(
    src: Path = typer.Argument(..., metavar="SRC", help="Image to compress (PNG, JPEG, WebP, TIFF, ...), a folder of them, or - for standard input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output .nac file, - for standard output, or a folder (for a folder SRC, or to put the file in) [default: SRC with .nac]."),
    quality: Optional[int] = QUALITY,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model ID (see `neurocodec models`)."),
    force: bool = FORCE,
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing on success."),
    bpp: Optional[float] = typer.Option(None, "--bpp", help="Aim for this many bits per pixel instead of a quality."),
    psnr: Optional[float] = typer.Option(None, "--psnr", help="Aim for this PSNR (dB) instead of a quality."),
    effort: int = EFFORT,
    threads: Optional[int] = THREADS,
    device: Optional[str] = DEVICE,
    workers: Optional[int] = WORKERS,
    engine: str = ENGINE,
) -> int:
    """Compress an image to .nac and report bpp and PSNR next to JPEG at the same size.

    With a folder: encode every image under it into OUTDIR (same relative paths, .nac), skipping
    files already done, and print a summary; exit status 1 if any file failed.
    """
    from . import baselines, codec, io, metrics, zoo

    _set_threads(threads)
    device = _check_device(device)
    if quality is not None and (bpp is not None or psnr is not None):
        raise ValueError("--quality, --bpp and --psnr are alternatives: give one")
    quality = DEFAULT_QUALITY if quality is None else quality
    if src.is_dir():
        if bpp is not None or psnr is not None:
            raise ValueError("--bpp and --psnr apply to single files, not folders (use --quality)")
        zoo.card(zoo.resolve(model))  # an unknown or retired model fails once, not once per file
        return _folder("encode", src, output, engine, workers, quiet=quiet, quality=quality, model=model,
                       force=force, device=device, effort=effort)
    dst = _output(src, output, ".nac", force)
    pic = io.load_bytes(io.read_input(src)) if str(src) == io.STDIO else io.load(src)
    m = zoo.load(zoo.resolve(model))
    if bpp is not None or psnr is not None:
        import warnings

        from .targets import encode_to_target

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                hit = encode_to_target(pic, m, bpp, psnr, device=device, effort=effort)
            except ValueError as e:  # in the command line's words
                raise ValueError(str(e).replace("target_bpp", "--bpp").replace("target_psnr", "--psnr")) from None
        enc = hit.encoded
        quality = codec.container.unpack(enc.data).quality
        if not hit.met:
            typer.echo(f"neurocodec: target not met: {hit.note}", err=True)
    else:
        enc = codec.encode(pic, quality, m, reconstruct=not quiet, device=device, effort=effort)
    io.write_output(dst, enc.data, force=force)
    if quiet:
        return 0
    echo = _reporter(dst)
    pixels = pic.color
    ours = enc.reconstruction.color
    n = len(enc.data)
    bpp = 8 * n / (pic.width * pic.height)
    p = metrics.psnr(pixels, ours)
    echo(f"{src} -> {dst}: {pic.width}x{pic.height} {pic.mode}, {n:,} bytes, {bpp:.3f} bpp, "
          f"PSNR {p:.2f} dB (quality {quality}, model {m.model_id}{f', effort {effort}' if effort else ''})")
    colour = colour_bytes(enc.data)
    jpeg = baselines.at_least(pixels, "jpeg", colour)
    jp = metrics.psnr(pixels, jpeg.pixels)
    jbpp = 8 * len(jpeg.data) / (pic.width * pic.height)
    verdict = jpeg_verdict(p, colour, jp, len(jpeg.data))
    against = "" if colour == n else f" than neurocodec's colour ({colour:,} bytes; alpha adds {n - colour:,})"
    echo(f"JPEG at the nearest size not smaller{against}: {len(jpeg.data):,} bytes, {jbpp:.3f} bpp, "
          f"PSNR {jp:.2f} dB (quality {jpeg.quality}); {verdict}")
    return 0


def jpeg_verdict(psnr: float, size: int, jpeg_psnr: float, jpeg_size: int) -> str:
    """The last words of encode's report: how neurocodec's file compares with the JPEG beside it.

    The JPEG is the smallest one not smaller than neurocodec's file, so normally the PSNR
    difference says it all. A flat or tiny image breaks that: even quality 1's JPEG can be larger
    and exact (PSNR inf), and "neurocodec is -inf dB" would hide that our file is a fraction of
    its size; there the sizes are the comparison. When JPEG's smallest file is much larger than
    ours (a tiny picture), a PSNR difference alone would read as a loss, so both are given."""
    if jpeg_size < size:
        return "JPEG cannot spend that many bytes"
    if math.isinf(jpeg_psnr) or math.isinf(psnr):
        exact = "both are exact" if math.isinf(jpeg_psnr) and math.isinf(psnr) else (
            "JPEG's is exact" if math.isinf(jpeg_psnr) else "neurocodec's is exact")
        return f"{exact}; JPEG needs {jpeg_size / size:.2f}x the bytes"
    if jpeg_size >= 1.25 * size:
        return f"JPEG needs {jpeg_size / size:.2f}x the bytes; neurocodec is {psnr - jpeg_psnr:+.2f} dB"
    return f"neurocodec is {psnr - jpeg_psnr:+.2f} dB"


def colour_bytes(data: bytes) -> int:
    """The bytes of a .nac file less its lossless alpha stream: what the colour costs, which is
    what codecs compared without alpha (JPEG has none) must be matched against."""
    from dataclasses import replace

    from .container import DEFAULT_LIMITS, Stream, unpack

    ours = replace(DEFAULT_LIMITS, max_pixels=2**62, max_latent_elements=2**62)  # our own file, any size
    return len(data) - sum(len(chunk) for kind, chunk in unpack(data, ours).streams if kind == Stream.ALPHA)


@app.command()
def decode(
    src: Path = typer.Argument(..., metavar="SRC", help=".nac file to decompress, a folder of them, or - for standard input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output image, - for standard output, or a folder (for a folder SRC, or to put the image in); format from extension [default: SRC with .png]."),
    force: bool = FORCE,
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing on success."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Image format (png, jpeg, webp, tiff, ...) instead of the extension's [default for -: png]."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help="Refuse files declaring more pixels [default: 2^28]."),
    max_memory: Optional[int] = typer.Option(None, "--max-memory", min=1, help="Refuse files whose decode needs more MiB [default: 8192]."),
    enhance: bool = typer.Option(False, "--enhance", help="Run the DnCNN post-filter on the result (+0.1 dB at quality 25, -0.3 dB at 75 with the default model; see docs/seeds.md)."),
    threads: Optional[int] = THREADS,
    device: Optional[str] = DEVICE,
    workers: Optional[int] = WORKERS,
    engine: str = ENGINE,
) -> int:
    """Decompress a .nac file to PNG, JPEG, WebP, TIFF, ... (chosen by --format or the output extension).

    With a folder: decode every .nac under it to PNG files (or --format's) in OUTDIR (same relative
    paths), skipping files already done, and print a summary; exit status 1 if any file failed.
    """
    from dataclasses import replace

    from . import container, io
    from . import decode as decode_bytes

    _set_threads(threads)
    device = _check_device(device)
    limits = container.DEFAULT_LIMITS
    if max_pixels is not None:
        limits = replace(limits, max_pixels=max_pixels)
    if max_memory is not None:
        limits = replace(limits, max_memory_bytes=max_memory * 2**20)
    if src.is_dir():
        if enhance:
            raise ValueError("--enhance applies to single files, not folders")
        ext = io.format_suffix(fmt) if fmt else ".png"
        return _folder("decode", src, output, engine, workers, ext, quiet, force=force, device=device, limits=limits)
    dst = _output(src, output, io.format_suffix(fmt) if fmt else ".png", force)
    image = decode_bytes(io.read_input(src), limits, device)
    if enhance:
        from . import papers, zoo

        image = papers.enhance_picture(io.load(image), zoo.load("paper-dncnn")).to_pil()
    data = io.image_bytes(image, dst, fmt or ("png" if str(dst) == io.STDIO else None))
    io.write_output(dst, data, force=force)
    if not quiet:
        _reporter(dst)(f"{src} -> {dst}: {image.width}x{image.height} {image.mode}")
    return 0


def _output(src: Path, output: Optional[Path], suffix: str, force: bool, name: Optional[str] = None) -> Path:
    """Where a single file's result goes: ``output``, a file named after ``src`` (``name``, or
    its stem + ``suffix``) beside it or inside ``output`` when that is a folder. Checked before
    any work, so a name that cannot be written fails at once, not after a long encode."""
    from . import io

    if str(src) != io.STDIO and not src.is_file():
        raise FileNotFoundError(f"no such file: {src}")
    if output is None or (str(output) != io.STDIO and output.is_dir()):
        if str(src) == io.STDIO:
            raise ValueError("reading standard input needs --output FILE (or --output - for standard output)")
        own = name or src.with_suffix(suffix).name
        output = src.with_name(own) if output is None else output / own
    io.check_output(output, force, src)
    return output


def _reporter(dst: Path):
    """Where reports go: stderr when stdout carries the data, stdout otherwise."""
    to_stderr = str(dst) == "-"
    return lambda message: typer.echo(message, err=to_stderr)


@app.command()
def enhance(
    src: Path = typer.Argument(..., metavar="SRC", help="A JPEG (or any image) with compression artifacts; - reads standard input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output image, - for standard output [default: SRC with .enhanced.png]."),
    model: str = typer.Option("paper-dncnn", "--model", "-m", help="Artifact-removal model."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite the output file if it exists."),
) -> int:
    """Remove JPEG block and ringing artifacts with the DnCNN post-filter."""
    from . import io, papers, zoo

    dst = _output(src, output, ".png", force, name=src.stem + ".enhanced.png")
    pic = io.load_bytes(io.read_input(src)) if str(src) == io.STDIO else io.load(src)
    m = zoo.load(model)
    if getattr(m, "family", None) != "jpeg+dncnn":
        raise ValueError(f"model '{model}' is not an artifact remover (try paper-dncnn)")
    image = papers.enhance_picture(pic, m).to_pil()
    io.write_output(dst, io.image_bytes(image, dst, "png" if str(dst) == io.STDIO else None), force=force)
    _reporter(dst)(f"{src} -> {dst}: {pic.width}x{pic.height} {pic.mode}, artifacts removed with {model}")
    return 0


@app.command()
def info(
    src: Path = typer.Argument(..., metavar="SRC", help=".nac file."),
    as_json: bool = typer.Option(False, "--json", help="Print the header as JSON."),
) -> None:
    """Show a .nac file's header: model, image size and mode, streams, bpp."""
    from . import read_info

    if not src.is_file():
        raise FileNotFoundError(f"no such file: {src}")
    fields = read_info(src.read_bytes())
    if as_json:
        typer.echo(json.dumps(fields, indent=2))
        return
    for k, v in fields.items():
        if k == "bpp":
            v = f"{v:.4f}"
        typer.echo(f"{k:>15}: {v}")


@app.command()
def compare(
    src: Path = typer.Argument(..., metavar="SRC", help="Image to compress with every codec."),
    quality: Optional[int] = QUALITY,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model ID."),
    effort: int = EFFORT,
) -> None:
    """neurocodec vs Pillow's JPEG, WebP and AVIF at matched size: bytes, bpp, PSNR, MS-SSIM."""
    from . import baselines, codec, io, metrics, zoo

    quality = DEFAULT_QUALITY if quality is None else quality
    pic = io.load(src)
    pixels = pic.color
    enc = codec.encode(pic, quality, zoo.load(zoo.resolve(model)), reconstruct=True, effort=effort)
    px = pic.width * pic.height
    ours = colour_bytes(enc.data)  # the others code no alpha
    rows = [("neurocodec", f"q{quality}" + (f" e{effort}" if effort else ""), ours, enc.reconstruction.color)]
    for name in baselines.available():
        c = baselines.at_least(pixels, name, ours)
        rows.append((name, f"q{c.quality}", len(c.data), c.pixels))
    alpha = "" if ours == len(enc.data) else f" (colour only: neurocodec's alpha adds {len(enc.data) - ours:,} bytes)"
    typer.echo(f"{src}: {pic.width}x{pic.height} {pic.mode}; other codecs at the nearest size not smaller{alpha}")
    typer.echo(f"{'codec':<11} {'setting':>7} {'bytes':>10} {'bpp':>7} {'PSNR dB':>8} {'MS-SSIM':>8}")
    for name, setting, n, out in rows:
        short = "  (its largest file is smaller)" if n < ours else ""
        typer.echo(f"{name:<11} {setting:>7} {n:>10,} {8 * n / px:>7.3f} {metrics.psnr(pixels, out):>8.2f} "
                   f"{metrics.ms_ssim(pixels, out):>8.4f}{short}")


@app.command()
def models() -> None:
    """List the models this installation can use: shipped ones, then those found on
    $NEUROCODEC_WEIGHTS_PATH (a folder list, where the files of retired models go)."""
    from . import zoo

    shipped = set(zoo.shipped())
    for mid in zoo.available():
        card = zoo.card(mid)
        default = " (default)" if mid == zoo.DEFAULT_MODEL else ""
        where = "" if mid in shipped else f" [{zoo.PATH_VARIABLE}]"
        typer.echo(f"{mid}{default}{where}: {card.get('architecture', '')}")


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, help="JSON training config (see src/neurocodec/train/configs)."),
    data: Optional[Path] = typer.Option(None, help="Folder of training images."),
    out: Optional[Path] = typer.Option(None, help="Run folder: checkpoint, log, config."),
    steps: Optional[int] = typer.Option(None, help="Total steps (resumes from the run folder)."),
    time_budget: Optional[float] = typer.Option(None, help="Stop cleanly after this many seconds."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda [default: cuda if available]."),
    init: Optional[Path] = typer.Option(None, help="Start of a run without a checkpoint: a snapshot, or shipped weights (ID.safetensors beside ID.json)."),
) -> None:
    """Train (or resume) the photo model; see docs/training.md."""
    import json

    from .train.__main__ import main as train_main

    given = json.loads(config.read_text()) if config is not None and config.is_file() else {}
    if config is not None and not config.is_file():
        raise FileNotFoundError(f"no such file: {config}")
    if (data or given.get("data")) is None or (out or given.get("out")) is None:
        raise ValueError("train needs --data DIR and --out RUN (on the command line or in --config)")
    argv = []
    for flag, value in (("--config", config), ("--data", data), ("--out", out), ("--steps", steps),
                        ("--time-budget", time_budget), ("--device", device), ("--init", init)):
        if value is not None:
            argv += [flag, str(value)]
    train_main(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps errors to exit codes 1 (input/usage) and 2 (internal)."""
    from .errors import NacError

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="neurocodec", standalone_mode=False)
    except (NacError, ValueError, FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError) as e:
        if _click_kind(e) == "ClickException":
            e.show()
            return 1
        print(f"neurocodec: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the one place that turns bugs into exit code 2
        kind = _click_kind(e)
        if kind == "ClickException":  # usage errors: bad option, missing argument, ...
            e.show()
            return 1
        if kind == "Abort":  # end of input at a prompt
            print("neurocodec: aborted", file=sys.stderr)
            return 1
        print(f"neurocodec: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if result == 130:  # typer's answer to Ctrl-C (KeyboardInterrupt), 128 + SIGINT
        print("neurocodec: interrupted", file=sys.stderr)
    return result if isinstance(result, int) else 0


def _click_kind(e: BaseException) -> str | None:
    """Typer vendors click privately, so recognise its exceptions by class name."""
    names = {c.__name__ for c in type(e).__mro__}
    return "ClickException" if "ClickException" in names else "Abort" if "Abort" in names else None


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
