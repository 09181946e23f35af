"""The papers' claims next to our reproductions, with every code entropy-coded into real .nac bytes.

    python benchmarks/seeds.py                  # all models; ../shared/datasets by default
    python benchmarks/seeds.py --only dncnn     # one part: autoencoders | dncnn

For each autoencoder, on its held-out split: MSE of the unquantized network (what the papers
report), MSE and PSNR after real coding at several qualities, bpp from the file bytes (and from
the code stream alone, without the container header), the paper's "compression factor", and
Pillow JPEG and WebP on the same 28x28 images at the nearest size not smaller than ours.
For DnCNN: PSNR of Kodak JPEGs at quality 10/30/50 before and after artifact removal, and the
same filter on neurocodec's own reconstructions (which decides whether ``decode --enhance`` is
worth offering). Writes ``benchmarks/results/seeds.json`` and the table in ``docs/seeds.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from provenance import git_revision, command, write_result  # noqa: E402

from neurocodec import baselines, codec, io, metrics, papers, zoo  # noqa: E402
from neurocodec.container import Stream, unpack  # noqa: E402
from neurocodec.train.papers import RECIPES, digit_split  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
QUALITIES = [100, 75, 50, 25, 1]
DEFAULT_Q = 75
CLAIMS = {
    "paper-cae20-mnist": {"mse": 0.0022, "compression_factor": 49 / 784, "text": "MSE 0.0022 on MNIST, compression factor 0.0625"},
    "paper-cae20-fmnist": {"mse": 0.0064, "compression_factor": 49 / 784, "text": "MSE 0.0064 on Fashion-MNIST, compression factor 0.0625"},
    "paper-denoise-fmnist": {"bce": 0.124, "compression_factor": 49 / 784, "text": "loss 0.124 after 100 epochs (reconstructions -> originals)"},
    "paper-fc196-mnist": {"compression_factor": 196 / 784, "text": "4:1 compression of MNIST (784 -> 196), RBM pre-training"},
    "paper-cae28-mnist": {"compression_factor": 28 / 784, "text": "28x28 -> 28x1, '96.4 % of the data compressed'"},
}
DNCNN_JPEG_QUALITIES = [10, 30, 50]
OWN_QUALITIES = [25, 75]


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2))


def _bce(pred: torch.Tensor, target: torch.Tensor) -> float:
    p = pred.clamp(1e-7, 1 - 1e-7)
    return float(-(target * p.log() + (1 - target) * (1 - p).log()).mean())


@torch.no_grad()
def autoencoder(model_id: str, images: np.ndarray, baseline_limit: int) -> dict:
    model = zoo.load(model_id)
    x = torch.from_numpy(images.copy()).float().div(255)[:, None]
    raw = torch.cat([model.net(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    if model.refiner is not None:
        raw = torch.cat([model.refiner(raw[i : i + 1000].clamp(0, 1)) for i in range(0, len(raw), 1000)])
    entry = {
        "images": len(images),
        "code_values": int(np.prod(model.code_shape)),
        "compression_factor": float(np.prod(model.code_shape)) / 784,
        "unquantized_mse": float(((raw - x) ** 2).mean()),
        "unquantized_bce": _bce(raw, x),
        "qualities": {},
    }
    for q in QUALITIES:
        sizes, payload, mses, psnrs = [], [], [], []
        for img in images:
            enc = codec.encode(io.Picture(img[:, :, None]), q, model, reconstruct=True)
            out = enc.reconstruction.pixels[:, :, 0]
            sizes.append(len(enc.data))
            payload.append(len(unpack(enc.data).stream(Stream.Y)))
            mses.append(_mse(img, out))
            psnrs.append(metrics.psnr(img[:, :, None], out[:, :, None]))
        entry["qualities"][str(q)] = {
            "step_multiplier": model.steps[q - 1],
            "bytes": float(np.mean(sizes)), "bpp": 8 * float(np.mean(sizes)) / 784,
            "payload_bpp": 8 * float(np.mean(payload)) / 784,
            "mse": float(np.mean(mses)), "psnr": float(np.mean(psnrs)),
        }
        print(f"  {model_id} q{q}: {entry['qualities'][str(q)]}", flush=True)
    # Pillow at the nearest size not smaller than our default-quality file, on the first images.
    for name in ("jpeg", "webp"):
        sizes, mses, qs = [], [], []
        for img in images[:baseline_limit]:
            ours = len(codec.encode(io.Picture(img[:, :, None]), DEFAULT_Q, model).data)
            c = baselines.at_least(img[:, :, None], name, ours)
            sizes.append(len(c.data))
            mses.append(_mse(img, c.pixels[:, :, 0]))
            qs.append(c.quality)
        entry[name] = {"images": len(sizes), "bytes": float(np.mean(sizes)), "bpp": 8 * float(np.mean(sizes)) / 784,
                       "mse": float(np.mean(mses)), "mean_quality": float(np.mean(qs))}
    return entry


def dncnn(kodak: Path, own_limit: int) -> dict:
    model = zoo.load("paper-dncnn")
    files = sorted(kodak.glob("*.png"))
    entry: dict = {"images": len(files), "jpeg": {}, "neurocodec": {}}
    for q in DNCNN_JPEG_QUALITIES:
        before, after = [], []
        for f in files:
            rgb = io.load(f).color
            jp = baselines.compress(rgb, "jpeg", q).pixels
            before.append(metrics.psnr(rgb, jp))
            after.append(metrics.psnr(rgb, papers.enhance(jp, model)))
        entry["jpeg"][str(q)] = {"psnr_jpeg": float(np.mean(before)), "psnr_enhanced": float(np.mean(after)),
                                 "gain_db": float(np.mean(after) - np.mean(before))}
        print(f"  dncnn jpeg q{q}: {entry['jpeg'][str(q)]}", flush=True)
    photo = zoo.load(zoo.DEFAULT_MODEL)
    for q in OWN_QUALITIES:
        before, after = [], []
        for f in files[:own_limit]:
            pic = io.load(f)
            rec = codec.encode(pic, q, photo, reconstruct=True).reconstruction.color
            before.append(metrics.psnr(pic.color, rec))
            after.append(metrics.psnr(pic.color, papers.enhance(rec, model)))
        entry["neurocodec"][str(q)] = {"model": photo.model_id, "images": len(before),
                                       "psnr": float(np.mean(before)), "psnr_enhanced": float(np.mean(after)),
                                       "gain_db": float(np.mean(after) - np.mean(before))}
        print(f"  dncnn on {photo.model_id} q{q}: {entry['neurocodec'][str(q)]}", flush=True)
    return entry


# ----- the doc table ---------------------------------------------------------------------------------
START, END = "<!-- seeds-table:start -->", "<!-- seeds-table:end -->"


def table(result: dict) -> str:
    rows = [
        "| model | paper's claim | code values (factor) | unquantized MSE | MSE after coding (q75) | PSNR | file bpp | code-stream bpp | JPEG at >= size: bpp / MSE | WebP at >= size: bpp / MSE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mid, e in result.get("autoencoders", {}).items():
        d = e["qualities"][str(DEFAULT_Q)]
        rows.append(
            f"| `{mid}` | {CLAIMS[mid]['text']} | {e['code_values']} ({e['compression_factor']:.4f}) | "
            f"{e['unquantized_mse']:.4f} | {d['mse']:.4f} | {d['psnr']:.2f} dB | {d['bpp']:.3f} | {d['payload_bpp']:.3f} | "
            f"{e['jpeg']['bpp']:.2f} / {e['jpeg']['mse']:.4f} | {e['webp']['bpp']:.2f} / {e['webp']['mse']:.4f} |"
        )
    lines = ["\n".join(rows)]
    dn = result.get("dncnn")
    if dn:
        lines.append("\n| DnCNN on Kodak | PSNR before | PSNR after | gain |\n|---|---|---|---|")
        for q, v in dn["jpeg"].items():
            lines.append(f"| JPEG q{q} ({dn['images']} images) | {v['psnr_jpeg']:.2f} dB | {v['psnr_enhanced']:.2f} dB | {v['gain_db']:+.2f} dB |")
        for q, v in dn["neurocodec"].items():
            lines.append(f"| {v['model']} q{q} ({v['images']} images) | {v['psnr']:.2f} dB | {v['psnr_enhanced']:.2f} dB | {v['gain_db']:+.2f} dB |")
    return f"{START}\n<!-- generated by benchmarks/seeds.py from benchmarks/results/seeds.json -->\n" + "\n".join(lines) + f"\n{END}"


def write_doc(result: dict, doc: Path) -> None:
    text = doc.read_text()
    a, b = text.index(START), text.index(END) + len(END)
    doc.write_text(text[:a] + table(result) + text[b:])


def update_cards(result: dict) -> None:
    """Copy each model's measured figures into its model card (``measured``), naming the source
    and the revision and date of the run that measured that model's section."""
    def source(section: str) -> dict:
        at = result.get(f"{section}_measured_at", result)
        return {"source": "benchmarks/results/seeds.json", "git_revision": at["git_revision"], "date": at["date"]}

    measured: dict[str, dict] = {}
    sources: dict[str, dict] = {}
    for mid, e in result.get("autoencoders", {}).items():
        d = e["qualities"][str(DEFAULT_Q)]
        measured[mid] = {
            "test_images": e["images"], "unquantized_mse": round(e["unquantized_mse"], 6),
            f"q{DEFAULT_Q}": {k: round(d[k], 6) for k in ("mse", "psnr", "bpp", "payload_bpp")},
            "per_quality": {q: {k: round(v[k], 6) for k in ("mse", "bpp")} for q, v in e["qualities"].items()},
        }
        sources[mid] = source("autoencoders")
    if "dncnn" in result:
        dn = result["dncnn"]
        measured["paper-dncnn"] = {
            "kodak_jpeg_psnr_gain_db": {q: round(v["gain_db"], 3) for q, v in dn["jpeg"].items()},
            "gain_on_neurocodec_output_db": {q: round(v["gain_db"], 3) for q, v in dn["neurocodec"].items()},
        }
        sources["paper-dncnn"] = source("dncnn")
    for mid, m in measured.items():
        path = zoo.WEIGHTS_DIR / f"{mid}.json"
        card = json.loads(path.read_text())
        card["measured"] = {**sources[mid], **m}
        path.write_text(json.dumps(card, indent=2) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help="folder holding mnist/, fashion-mnist/ and kodak/")
    p.add_argument("--only", choices=["autoencoders", "dncnn"])
    p.add_argument("--limit", type=int, help="at most N test images per autoencoder")
    p.add_argument("--baseline-limit", type=int, default=500, help="images for the JPEG/WebP comparison")
    p.add_argument("--own-limit", type=int, default=6, help="Kodak images for DnCNN on neurocodec output")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = HERE / "results" / "seeds.json"
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update({
        "command": command(argv),
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch_threads": args.threads,
        "protocol": "pixels in [0, 1] for MSE; bpp = 8 * .nac file bytes / 784; code-stream bpp counts the "
                    "entropy-coded code alone; JPEG/WebP: lowest quality whose file is not smaller than ours",
        "claims": CLAIMS,
    })
    # --only refreshes one section, so each section records where it came from as well
    provenance = {k: result[k] for k in ("command", "git_revision", "date", "torch_threads")}
    if args.only in (None, "autoencoders"):
        result["autoencoders"] = {}
        result["autoencoders_measured_at"] = provenance
        for mid in CLAIMS:
            recipe = RECIPES[mid]
            dataset = RECIPES[recipe.base].dataset if recipe.base else recipe.dataset
            _, test = digit_split(dataset, args.data / dataset)
            test = test[: args.limit] if args.limit else test
            print(f"{mid}: {len(test)} held-out images", flush=True)
            result["autoencoders"][mid] = autoencoder(mid, test, args.baseline_limit)
    if args.only in (None, "dncnn"):
        result["dncnn"] = dncnn(args.data / "kodak", args.own_limit)
        result["dncnn_measured_at"] = provenance
    write_result(out, result)
    write_doc(result, ROOT / "docs" / "seeds.md")
    update_cards(result)
    print(f"wrote {out} and docs/seeds.md")
    return result


if __name__ == "__main__":
    main()
