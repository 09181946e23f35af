"""What the exact fixed-point entropy parameters cost in rate-distortion terms (docs/determinism.md).

    python benchmarks/exact_cost.py [DIR] [--qualities 12,50,88] [--limit N]

For every image and quality, the same y and z (one g_a and h_a pass) are coded twice, with the
same tables and coder: once with the entropy parameters the codec uses (fixed-point h_s, context
and slices, exact in float64) and once with the float32 network the model was trained with (not
reproducible across machines, so not a usable codec: this is the "before"). Both are really
entropy-coded; PSNR comes from each path's own y_hat through g_s. Both round every latent to the
nearest integer, so they differ in their parameters only; the exact path's y streams, rounded as
the codec rounds at effort 0 (``quantize``), are checked byte for byte against ``neurocodec.encode``. Reports bytes and PSNR per path and the
BD-rate of exact vs float (PCHIP, as ``benchmarks/rd.py``), and how far the exact path's pixels
move when g_s runs in float64 instead of float32 (what other hardware's float rounding may do).
Writes ``benchmarks/results/exact_cost.json``.

For a model without context the float path is the float32 h_s's parameters, one ``Y`` stream.
For a checkerboard model (with or without channel slices) the exact path is the codec's own
passes (``codec._encode_y``: h_s, the context and the slices on the fixed-point grid), checked
stream for stream against ``neurocodec.encode``; the float path is the float32 network as
trained (``two_pass_parameters``: each half and slice rounded around its own float means before
the next reads it), coded in the same two halves. The result file names the model it measured.
"""

from __future__ import annotations

import argparse
import copy
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

from neurocodec import codec, container, io, metrics, zoo  # noqa: E402
from neurocodec.container import Stream  # noqa: E402
from neurocodec.nets.checkerboard import CheckerboardHyperprior, anchor_mask  # noqa: E402
from neurocodec.nets.inference import transforms  # noqa: E402
from provenance import git_revision, command, write_result  # noqa: E402
from rd import DEFAULT_DIR, bd_rate  # noqa: E402


def code_y(model, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> tuple[int, torch.Tensor, bytes]:
    """Entropy-code y with these parameters; returns (y + escape bytes, y_hat, y stream)."""
    residual = torch.round(y.double() - means.double())
    index = model.y_coder.scale_index(scales[0].double().numpy())
    y_stream, esc = model.y_coder.encode(residual[0].numpy().astype(np.int64), index)
    return len(y_stream) + len(esc), residual + means.double(), y_stream


def code_checkerboard(model, y: torch.Tensor, z_t: torch.Tensor, level: torch.Tensor, real) -> dict:
    """{path: (y bytes, y_hat float64)} of a checkerboard model's exact passes and of its float32
    network, both really entropy-coded in two halves (anchors, then the rest)."""
    net, coder = model.net, model.y_coder
    scales, means = codec._entropy_parameters(model, z_t[0].numpy(), level, "auto")
    checked, _ = codec._encode_y(model, y, scales, means, rd_rounding=True)  # as neurocodec.encode rounds
    for kind, stream in checked:
        if stream != real.stream(kind):
            raise RuntimeError(f"the exact path does not reproduce neurocodec.encode's {kind.name} stream")
    streams, exact_hat = codec._encode_y(model, y, scales, means, rd_rounding=False)
    hyper = net.h_s(z_t.float() * net.interpolate(net.inv_hyper_gain, level))
    anchor = anchor_mask(*y.shape[2:])
    f_s, f_m = net.two_pass_parameters(y, hyper, net._entropy_params(hyper, None), anchor)
    residual = torch.round(y.double() - f_m.double())
    float_bytes = 0
    for half in (anchor, ~anchor):
        symbols, esc = coder.encode_parts([(residual[0][:, half].numpy().astype(np.int64),
                                            coder.scale_index(f_s[0][:, half].double().numpy()))])
        float_bytes += len(symbols) + len(esc)
    return {"exact": (sum(len(d) for _, d in streams), exact_hat), "float": (float_bytes, residual + f_m.double())}


@torch.inference_mode()
def measure(model, net64, pic, quality: int, tf) -> dict:
    net = model.net
    rate = codec.quality_to_rate(quality, model.levels)
    level = torch.tensor([rate / codec.RATE_SCALE])
    y = codec._analysis(tf, pic.color, level, "auto")  # exactly what neurocodec.encode computes
    z = torch.round(tf.hyper_analysis(y, level).cpu())
    z_int = model.z_coder.clamp(z[0].numpy().astype(np.int64))
    z_bytes = len(model.z_coder.encode(z_int))
    z_t = torch.from_numpy(z_int)[None]

    data = codec.encode(pic, quality, model).data
    real = container.unpack(data)
    header = len(data) - sum(len(d) for _, d in real.streams)
    out = {"quality": quality}
    coded = code_checkerboard(model, y, z_t, level, real) if isinstance(net, CheckerboardHyperprior) else None
    if coded is None:
        exact_s, exact_m = net.entropy_parameters(z_t, level)
        float_s, float_m = net.h_s(z_t.float() * net.interpolate(net.inv_hyper_gain, level)).chunk(2, dim=1)
    for name in ("exact", "float"):
        if coded is not None:
            y_bytes, y_hat = coded[name]
        else:
            y_bytes, y_hat, y_stream = code_y(model, y, *((exact_s, exact_m) if name == "exact" else (float_s, float_m)))
            if name == "exact" and codec._encode_y(model, y, exact_s, exact_m, rd_rounding=True)[0][0][1] != real.stream(Stream.Y):
                raise RuntimeError("the exact path does not reproduce neurocodec.encode's y stream")
        pixels = codec._synthesis(tf, y_hat.float(), level, pic.height, pic.width, "RGB", "auto")
        total = header + z_bytes + y_bytes
        out[name] = {"bytes": total, "bpp": 8 * total / (pic.width * pic.height),
                     "psnr": metrics.psnr(pic.color, pixels)}
        if name == "exact":  # the same y_hat through a float64 copy of g_s
            x64 = net64.synthesis(y_hat, level.double())
            x64 = x64[0, :, : pic.height, : pic.width].clone()
            diff = np.abs(codec._to_pixels(x64, "RGB").astype(int) - pixels.astype(int))
            out["float64_synthesis"] = {"max_abs_diff": int(diff.max()), "fraction_differing": float((diff > 0).mean())}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--qualities", default="12,50,88")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    ap.add_argument("--model", default=zoo.DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "exact_cost.json")
    args = ap.parse_args(argv)
    qualities = [int(q) for q in args.qualities.split(",")]
    model = zoo.load(args.model)
    net64 = copy.deepcopy(model.net).double()
    tf = transforms(model.net, "cpu")
    paths = sorted(args.folder.glob("*.png"))[: args.limit]
    started = time.time()
    per_image = []
    for path in paths:
        pic = io.load(path)
        per_image.append({"image": path.name, "points": [measure(model, net64, pic, q, tf) for q in qualities]})
        print(path.name, [(p["quality"], p["exact"]["bytes"], p["float"]["bytes"]) for p in per_image[-1]["points"]],
              flush=True)

    curves = {}
    for name in ("exact", "float"):
        curves[name] = [
            {"quality": q,
             "bpp": float(np.mean([im["points"][i][name]["bpp"] for im in per_image])),
             "psnr": float(np.mean([im["points"][i][name]["psnr"] for im in per_image]))}
            for i, q in enumerate(qualities)
        ]
    byte_ratio = [im["points"][i]["exact"]["bytes"] / im["points"][i]["float"]["bytes"] - 1
                  for im in per_image for i in range(len(qualities))]
    result = {
        "command": command(argv),
        "git_revision": git_revision(),
        "model": args.model,
        "images": len(paths),
        "folder": args.folder.name,
        "threads": torch.get_num_threads(),
        "seconds": round(time.time() - started, 1),
        "curves": curves,
        "bd_rate_exact_vs_float_percent": bd_rate(curves["float"], curves["exact"]),
        "mean_byte_change_percent": 100 * float(np.mean(byte_ratio)),
        "float64_synthesis_max_abs_diff": max(p["float64_synthesis"]["max_abs_diff"] for im in per_image for p in im["points"]),
        "float64_synthesis_fraction_differing_mean": float(np.mean(
            [p["float64_synthesis"]["fraction_differing"] for im in per_image for p in im["points"]])),
        "max_byte_change_percent": 100 * float(np.max(np.abs(byte_ratio))),
        "per_image": per_image,
    }
    write_result(args.out, result, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=2))


if __name__ == "__main__":
    main()
