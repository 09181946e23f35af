"""Rate-distortion benchmark: neurocodec vs Pillow JPEG / WebP / AVIF on a folder of images.

    python benchmarks/rd.py [DIR] [--qualities 5,15,...] [--codecs jpeg,webp,avif] [--shift PX]

Protocol (docs/benchmarks.md): bpp = 8 * file bytes / pixels, header included; PSNR on 8-bit RGB
per image, then averaged over images per setting; BD-rate vs Pillow JPEG by PCHIP interpolation
of log-rate over PSNR on the overlapping PSNR range. Each neurocodec point is decoded from its
file bytes and its PSNR compared with the one measured at encode time. Times are medians of
``--repeats`` runs after a warm-up, on the first image, in this process with the stated threads.
``--shift PX`` drops PX rows and columns from the top and left of every image before any codec
sees it: on pictures that were JPEGs before (photos-train), that takes away the advantage JPEG has
when its 8x8 grid lands on the source's (benchmarks/jpeg_grid.py measures it), so every codec is
compared on the same picture with no grid favouring one of them.
Writes ``benchmarks/results/<name>.json`` and ``<name>.png`` with the command and git revision.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

import neurocodec  # noqa: E402
from neurocodec import baselines, codec, io, metrics, refine, zoo  # noqa: E402
from provenance import git_revision, command, write_result  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "datasets" / "kodak"
REFERENCE = ROOT.parent / "shared" / "reference" / "kodak-rd.json"
NEURO_QUALITIES = [1, 12, 25, 38, 50, 62, 75, 88, 100]
PILLOW_QUALITIES = [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95]


def bd_rate(anchor: list[dict], test: list[dict], within: tuple[float, float] | None = None) -> float | None:
    """Bjontegaard delta rate (percent) of ``test`` vs ``anchor``, PCHIP over PSNR, over the range
    both curves cover (narrowed to ``within`` = (lo, hi) dB if given)."""
    from scipy.interpolate import PchipInterpolator

    def curve(points):
        pts = sorted({round(p["psnr"], 9): p for p in points}.values(), key=lambda p: p["psnr"])
        return np.array([p["psnr"] for p in pts]), np.log(np.array([p["bpp"] for p in pts]))

    pa, ra = curve(anchor)
    pt, rt = curve(test)
    lo, hi = max(pa.min(), pt.min()), min(pa.max(), pt.max())
    if within is not None:
        lo, hi = max(lo, within[0]), min(hi, within[1])
    if hi <= lo or len(pa) < 2 or len(pt) < 2:
        return None
    grid = np.linspace(lo, hi, 1000)
    fa, ft = PchipInterpolator(pa, ra)(grid), PchipInterpolator(pt, rt)(grid)
    return float((np.exp(np.trapezoid(ft - fa, grid) / (hi - lo)) - 1) * 100)


def bd_rate_ms_ssim(anchor: list[dict], test: list[dict]) -> float | None:
    """BD-rate on the MS-SSIM axis (in dB, -10 log10(1 - MS-SSIM), as is customary)."""
    def as_db(points):
        return [{"bpp": p["bpp"], "psnr": -10 * np.log10(max(1 - p["ms_ssim"], 1e-12))} for p in points]

    if not all("ms_ssim" in p for p in anchor + test):
        return None
    return bd_rate(as_db(anchor), as_db(test))


def shifted(pic: io.Picture, px: int) -> io.Picture:
    """``pic`` without its first ``px`` rows and columns (every codec then sees the same pixels)."""
    if px == 0:
        return pic
    if px >= min(pic.width, pic.height):
        raise ValueError(f"--shift {px} leaves nothing of a {pic.width}x{pic.height} image")
    return io.Picture(np.ascontiguousarray(pic.pixels[px:, px:]), pic.icc)


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_neurocodec(images, qualities, model_id, repeats, effort=0):
    model = zoo.load(model_id)
    points = []
    for q in qualities:
        bpps, psnrs, ssims, mismatches = [], [], [], 0
        for name, pic in images:
            enc = codec.encode(pic, q, model, reconstruct=True, effort=effort)
            ref = pic.color
            p_enc = metrics.psnr(ref, enc.reconstruction.color)
            decoded = np.asarray(neurocodec.decode(enc.data).convert("RGB"))
            p_dec = metrics.psnr(ref, decoded)
            mismatches += int(p_dec != p_enc)
            bpps.append(8 * len(enc.data) / (pic.width * pic.height))
            psnrs.append(p_dec)
            ssims.append(metrics.ms_ssim(ref, decoded))
        point = {"quality": q, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs)),
                 "ms_ssim": float(np.mean(ssims)), "decode_psnr_mismatches": mismatches,
                 "per_image": [{"image": n, "bpp": b, "psnr": p, "ms_ssim": m}
                               for (n, _), b, p, m in zip(images, bpps, psnrs, ssims)]}
        points.append(point)
        print(f"  neurocodec q{q}: {point['bpp']:.3f} bpp, {point['psnr']:.2f} dB", flush=True)
    pic = images[0][1]
    mid = qualities[len(qualities) // 2]
    data = codec.encode(pic, mid, model, effort=effort).data
    timing = {
        "image": images[0][0], "quality": mid, "effort": effort,
        "encode_s": median_time(lambda: codec.encode(pic, mid, model, effort=effort), repeats),
        "decode_s": median_time(lambda: codec.decode(data), repeats),
    }
    return points, timing


def run_pillow(images, name, qualities, repeats):
    points = []
    for q in qualities:
        bpps, psnrs, ssims = [], [], []
        for _, pic in images:
            c = baselines.compress(pic.color, name, q)
            bpps.append(8 * len(c.data) / (pic.width * pic.height))
            psnrs.append(metrics.psnr(pic.color, c.pixels))
            ssims.append(metrics.ms_ssim(pic.color, c.pixels))
        points.append({"quality": q, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs)),
                       "ms_ssim": float(np.mean(ssims)),
                       "per_image": [{"image": n, "bpp": b, "psnr": p, "ms_ssim": m}
                                     for (n, _), b, p, m in zip(images, bpps, psnrs, ssims)]})
    pic = images[0][1].color
    blob = baselines.compress(pic, name, 50).data

    def dec():
        with Image.open(__import__("io").BytesIO(blob)) as im:
            im.load()

    timing = {"image": images[0][0], "quality": 50,
              "encode_s": median_time(lambda: baselines.compress(pic, name, 50), repeats),
              "decode_s": median_time(dec, repeats)}
    print(f"  {name}: done", flush=True)
    return points, timing


def reference_curves() -> dict:
    if not REFERENCE.exists():
        return {}
    ref = json.loads(REFERENCE.read_text())
    curves = {f"{k} (measured)": v for k, v in ref["measured_here"]["points"].items()}
    for k, v in ref["published"].items():
        if isinstance(v, dict) and "bpp" in v:
            curves[k] = [{"bpp": b, "psnr": p} for b, p in zip(v["bpp"], v["psnr"])]
    return curves


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6.5))
    for name, pts in result.get("reference_curves", {}).items():
        pts = sorted(pts, key=lambda p: p["bpp"])
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "--", lw=1, alpha=0.55, label=f"ref: {name}")
    for name, entry in result["codecs"].items():
        pts = entry["points"]
        style = "o-" if name == "neurocodec" else "s-"
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], style, lw=2.2 if name == "neurocodec" else 1.5,
                ms=4, label=f"{name} (this run)")
    ax.set_xlim(0, 2.0)
    ax.set_ylim(24, 42)
    ax.set_xlabel("bits per pixel (file bytes)")
    ax.set_ylabel("PSNR RGB (dB)")
    ax.set_title(f"Rate-distortion on {result['dataset']} ({result['images']} images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def record_history(result: dict, name: str, path: Path) -> None:
    """Keep one line per results file, model weights and git revision in ``history.json``:
    progress stays visible after ``<name>.json`` is overwritten by the next model's run, or by the
    same model's under a changed encoder (0.16.0's rounding); a rerun at the same revision
    replaces its line."""
    history = json.loads(path.read_text()) if path.exists() else []
    ours = result["codecs"]["neurocodec"]
    entry = {
        "results": f"{name}.json", "date": result["date"], "git_revision": result["git_revision"],
        "model": result["model"]["id"], "weights_sha256": result["model"]["weights_sha256"],
        "images": result["images"], "effort": result.get("effort", 0), "shift_px": result.get("shift_px", 0),
        "bd_rate_vs_jpeg_percent": {c: e.get("bd_rate_vs_jpeg_percent") for c, e in result["codecs"].items()},
        "bpp_range": [min(p["bpp"] for p in ours["points"]), max(p["bpp"] for p in ours["points"])],
        "encode_s": ours["timing"]["encode_s"], "decode_s": ours["timing"]["decode_s"],
    }
    key = ("results", "weights_sha256", "git_revision")
    history = [h for h in history if any(h[k] != entry[k] for k in key)]
    path.write_text(json.dumps(history + [entry], indent=1) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    p.add_argument("--name", default=None, help="results file stem [default: the folder's name]")
    p.add_argument("--model", default=None)
    p.add_argument("--qualities", default=",".join(map(str, NEURO_QUALITIES)))
    p.add_argument("--codecs", default="jpeg,webp,avif")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--held-out", type=int, default=0, metavar="N",
                   help="use only the files the trainer holds out with holdout_every=N (e.g. 16 on photos-train)")
    p.add_argument("--effort", type=int, default=0, choices=range(len(refine.EFFORTS)),
                   help="neurocodec's encoder effort (refine.py): 0 is the fast default")
    p.add_argument("--shift", type=int, default=0, metavar="PX",
                   help="drop PX rows and columns at the top and left of every image (moves JPEG's grid "
                        "off a JPEG source's; use a value that is not a multiple of 8)")
    args = p.parse_args(argv)
    if args.shift < 0:
        p.error("--shift must not be negative")

    torch.set_num_threads(args.threads)
    files = sorted(f for f in args.dir.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm"))
    if args.held_out:
        from neurocodec.train.data import image_files, split

        files = split(image_files(args.dir), args.held_out)[1]
    files = files[: args.limit] if args.limit else files
    images = [(f.name, shifted(io.load(f), args.shift)) for f in files]
    default_name = ("heldout" if args.held_out else args.dir.name) + (f"-shift{args.shift}" if args.shift else "") \
        + (f"-effort{args.effort}" if args.effort else "")
    name = args.name or default_name
    model_id = zoo.resolve(args.model)
    print(f"{len(images)} images from {args.dir}; model {model_id}", flush=True)

    result = {
        "command": command(argv),
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "torch_threads": args.threads,
                    "pillow": Image.__version__, "neurocodec": neurocodec.__version__},
        "dataset": args.dir.name + (f" (held-out: every {args.held_out}th file)" if args.held_out else ""),
        "images": len(images),
        "shift_px": args.shift,
        "protocol": "bpp = 8*file bytes/pixels; PSNR on 8-bit RGB per image, averaged per setting; "
                    "BD-rate vs Pillow JPEG (4:2:0 default), PCHIP on log-rate over PSNR",
        "model": {"id": model_id, "weights_sha256": zoo.card(model_id)["sha256"]},
        "effort": args.effort,
        "codecs": {},
    }
    pts, timing = run_neurocodec(images, [int(q) for q in args.qualities.split(",")], model_id, args.repeats,
                                 args.effort)
    result["codecs"]["neurocodec"] = {"points": pts, "timing": timing}
    for c in [c for c in args.codecs.split(",") if c]:
        if c not in baselines.available():
            print(f"  {c}: not available in this Pillow, skipped")
            continue
        pts, timing = run_pillow(images, c, PILLOW_QUALITIES, args.repeats)
        result["codecs"][c] = {"points": pts, "timing": timing}
    if "jpeg" in result["codecs"]:
        anchor = result["codecs"]["jpeg"]["points"]
        for c, entry in result["codecs"].items():
            entry["bd_rate_vs_jpeg_percent"] = bd_rate(anchor, entry["points"])
            entry["bd_rate_ms_ssim_vs_jpeg_percent"] = bd_rate_ms_ssim(anchor, entry["points"])
    if args.dir.resolve() == DEFAULT_DIR.resolve() and not args.shift:  # the references are of the whole images
        result["reference_curves"] = reference_curves()
        jpeg_ref = result["reference_curves"].get("jpeg (measured)")
        if jpeg_ref:
            result["reference_bd_rate_vs_measured_jpeg_percent"] = {
                k: bd_rate(jpeg_ref, v) for k, v in result["reference_curves"].items()
            }
        ours = result["codecs"]["neurocodec"]["points"]
        result["codecs"]["neurocodec"]["bd_rate_vs_reference_percent"] = {
            k: bd_rate(v, ours) for k, v in result["reference_curves"].items()
        }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    write_result(out / f"{name}.json", result)
    plot(result, out / f"{name}.png")
    record_history(result, name, out / "history.json")
    for c, entry in result["codecs"].items():
        bd = entry.get("bd_rate_vs_jpeg_percent")
        print(f"{c:>10}: BD-rate vs JPEG {bd:+.1f} %" if bd is not None else f"{c:>10}: no BD-rate",
              f"| encode {entry['timing']['encode_s'] * 1000:.0f} ms, decode {entry['timing']['decode_s'] * 1000:.0f} ms")
    print(f"wrote {out / (name + '.json')} and {name}.png")
    return result


if __name__ == "__main__":
    main()
