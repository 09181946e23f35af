"""Speed and memory benchmark: neurocodec vs Pillow JPEG / WebP / AVIF on a Kodak image and a 24 MP photo.

    python benchmarks/speed.py [--threads 2] [--repeats 7] [--no-large]
    python benchmarks/speed.py --table-only      # rewrite the README table from the JSON
    python benchmarks/speed.py --name speed-2threads --threads 2 --no-large   # another file, README untouched
    python benchmarks/speed.py --name speed-effort1 --effort 1 --no-large     # the encoder's search (refine.py)

Every measurement runs in a fresh child process (``--child``), so its peak RSS (VmHWM) belongs
to one operation: read the input file, load what it needs, code it ``repeats``
times after a warm-up (medians reported). A child's RSS includes the interpreter, torch and the
model; ``baseline_rss`` is that of a child that only imports and loads. The decode child also
times the bare synthesis on the same latents in the same run, interleaved with the decodes:
``net.g_s`` as trained (torch defaults) and the decoder's own channels-last g_s, and reports
decode / bare ratios; with a post-filter, also the filter as the decoder runs it and, where the
decoder fuses its convolutions with their ReLUs, the same filter unfused. Seams: PSNR of tiled
(forced 16-latent tiles) minus untiled coding on every Kodak image. The 24 MP image is a photos-train JPEG upscaled with Lanczos to 6000x4000 in a
temporary folder (never committed). The load average before and after is recorded, because the
machine may be shared. Writes ``benchmarks/results/speed.json`` with the command and git revision.
"""

from __future__ import annotations

import argparse
import io as stdio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from memory import peak_rss  # noqa: E402
from provenance import git_revision, command, write_result  # noqa: E402

KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
PHOTOS = ROOT.parent / "shared" / "datasets" / "photos-train"
LARGE_SIZE = (6000, 4000)
QUALITY = 75
PILLOW = {"jpeg": ("JPEG", {"quality": 75}), "webp": ("WEBP", {"quality": 75, "method": 6}),
          "avif": ("AVIF", {"quality": 60, "speed": 4})}
START, END = "<!-- speed-table:start -->", "<!-- speed-table:end -->"


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


# ----- child side: one operation per process -------------------------------------------------
def child(op: str, path: Path, repeats: int, threads: int, device: str | None, warmup: bool, effort: int = 0) -> dict:
    """Run ``op`` on ``path``; encoders leave their output next to the input (``NAME.nac``, ...)."""
    out: dict = {"op": op}
    if op.startswith(("nc-", "baseline")):  # Pillow's children never import torch
        import torch

        torch.set_num_threads(threads)
    if op == "baseline":
        from neurocodec import codec, zoo

        codec.model_transforms(zoo.load(), device or "cpu")
    elif op == "nc-encode":
        from neurocodec import codec, io, zoo

        model = zoo.load()
        def once():
            return codec.encode(io.load(path), QUALITY, model, device=device, effort=effort)
        if warmup:
            once()
        results = []
        times = _timed(lambda: results.append(once()), repeats)
        path.with_suffix(".nac").write_bytes(results[-1].data)
        out.update(times=times, bytes=len(results[-1].data))
    elif op == "nc-decode":
        out.update(_decode_child(path, repeats, device, warmup))
    elif op.startswith("pil-"):
        from PIL import Image

        name, action = op[4:].split(":")
        fmt, params = PILLOW[name]
        if action == "encode":
            def once():
                with Image.open(path) as im:
                    buf = stdio.BytesIO()
                    im.convert("RGB").save(buf, format=fmt, **params)
                return buf.getvalue()
        else:
            data = path.read_bytes()

            def once():
                with Image.open(stdio.BytesIO(data)) as im:
                    im.load()
        if warmup:
            once()
        results = []
        out["times"] = _timed(lambda: results.append(once()), repeats)
        if action == "encode":
            path.with_suffix(f".{name}").write_bytes(results[-1])
            out["bytes"] = len(results[-1])
    else:
        raise SystemExit(f"unknown op {op}")
    out["peak_rss"] = peak_rss()
    return out


def _decode_child(path: Path, repeats: int, device: str | None, warmup: bool) -> dict:
    """Decode times, and bare synthesis times on the same latents, interleaved in one run."""
    import torch

    from neurocodec import codec, container, zoo
    from neurocodec.nets import inference
    from neurocodec.nets.inference import transforms

    data = path.read_bytes()
    nac = container.unpack(data)
    out: dict = {"pixels": nac.width * nac.height, "bytes": len(data)}
    if nac.width * nac.height > 4_000_000:  # untiled bare synthesis would not fit the memory budget
        if warmup:
            codec.decode(data, device=device)
        out["times"] = _timed(lambda: codec.decode(data, device=device), repeats)
        return out
    model = zoo.load(nac.model_id)
    net = model.net
    level = torch.tensor([nac.rate / codec.RATE_SCALE])
    z = model.z_coder.decode(nac.stream(container.Stream.Z), nac.latent_shapes[1])
    scales, means = codec._entropy_parameters(model, z, level, "auto")
    y_hat = codec._decode_y(model, nac, scales, means).float()  # both checkerboard passes when there are two
    tf = transforms(net, device or "cpu")
    gained = y_hat * net.interpolate(net.inv_gain.detach(), level)
    with torch.inference_mode():
        bare = {
            "decode": lambda: codec.decode(data, device=device),
            "g_s_trained_module": lambda: net.g_s(gained),
            "g_s_decoder_kernels": lambda: tf.g_s(gained.contiguous(memory_format=torch.channels_last)),
        }
        if model.postfilter is not None:
            decoder = codec.model_transforms(model, device or "cpu")
            pixels = tf.synthesis(y_hat, level)
            bare["postfilter"] = lambda: decoder.filtered(pixels, level)  # in bfloat16 where the decoder uses it
            if inference.CONV_RELU is not None:  # the same filter with its ReLUs as separate passes
                bare["postfilter_unfused"] = lambda: _unfused(decoder, pixels, level)
        for fn in bare.values():
            fn()
        times: dict[str, list[float]] = {k: [] for k in bare}
        for _ in range(repeats):
            for k, fn in bare.items():
                times[k] += _timed(fn, 1)
    out["times"] = times.pop("decode")
    out["bare_synthesis_times"] = times
    med = statistics.median(out["times"])
    out["decode_over_bare_synthesis"] = {k: med / statistics.median(v) for k, v in times.items()}
    return out


def _unfused(decoder, pixels, level):
    """``decoder.filtered`` without the fused convolution + ReLU (``inference.CONV_RELU``)."""
    from neurocodec.nets import inference

    fused, inference.CONV_RELU = inference.CONV_RELU, None
    try:
        return decoder.filtered(pixels, level)
    finally:
        inference.CONV_RELU = fused


# ----- parent side ---------------------------------------------------------------------------
def run_child(op: str, path: Path, args, repeats: int, warmup: bool = True) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", op, str(path), "--repeats", str(repeats),
           "--threads", str(args.threads)] + (["--device", args.device] if args.device else [])
    cmd += [] if warmup else ["--no-warmup"]
    cmd += ["--effort", str(args.effort)] if op == "nc-encode" else []
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{op} on {path} failed:\n{res.stderr}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = time.perf_counter() - t
    if "times" in out:
        out["median_s"] = statistics.median(out["times"])
    print(f"  {op:<18} {path.name:<22} median {out.get('median_s', 0) * 1000:9.1f} ms, "
          f"peak RSS {out['peak_rss'] / 2**20:7.0f} MiB", flush=True)
    return out


def image_set(name: str, src: Path, work: Path, args, repeats: int, warmup: bool) -> dict:
    """neurocodec and Pillow codecs on one image file (copied into ``work`` as NAME.png)."""
    from PIL import Image

    image = work / f"{name}.png"
    if src != image:
        shutil.copyfile(src, image)
    with Image.open(image) as im:
        entry: dict = {"source": str(src), "size": list(im.size)}
        pixels = im.size[0] * im.size[1]
    enc = run_child("nc-encode", image, args, repeats, warmup)
    dec = run_child("nc-decode", image.with_suffix(".nac"), args, repeats, warmup)
    entry["neurocodec"] = {"quality": QUALITY, "effort": args.effort, "bpp": 8 * enc["bytes"] / pixels, "encode": enc, "decode": dec}
    for codec_name, (fmt, params) in PILLOW.items():
        if codec_name == "avif" and not _has_avif():
            continue
        e = run_child(f"pil-{codec_name}:encode", image, args, repeats, warmup)
        d = run_child(f"pil-{codec_name}:decode", image.with_suffix(f".{codec_name}"), args, repeats, warmup)
        entry[codec_name] = {"settings": params, "bpp": 8 * e["bytes"] / pixels, "encode": e, "decode": d}
    return entry


def _has_avif() -> bool:
    from PIL import features

    return bool(features.check("avif"))


def seams(files: list[Path], tile: int) -> dict:
    """Tiled minus untiled coding (same image, quality, model) on each file: PSNR, bpp, pixels."""
    import numpy as np

    from neurocodec import codec, io, metrics, tiling, zoo

    model = zoo.load()
    psnr, bpp, max_pixel, identical = [], [], 0, 0
    for f in files:
        pic = io.load(f)
        whole = codec.encode(pic, QUALITY, model, reconstruct=True, tile=None)
        tiled = codec.encode(pic, QUALITY, model, reconstruct=True, tile=tile)
        a, b = whole.reconstruction.color, tiled.reconstruction.color
        psnr.append(metrics.psnr(pic.color, b) - metrics.psnr(pic.color, a))
        bpp.append(8 * (len(tiled.data) - len(whole.data)) / (pic.width * pic.height))
        max_pixel = max(max_pixel, int(np.abs(a.astype(int) - b.astype(int)).max()))
        identical += tiled.data == whole.data
    return {"images": len(files), "quality": QUALITY, "tile_latents": tile, "halo_latents": tiling.HALO,
            "synthesis_halo_latents": tiling.synthesis_halo(codec.model_transforms(model, "cpu").synthesis_reach()),
            "psnr_delta_db": {"max_abs": max(map(abs, psnr)), "mean": statistics.mean(psnr)},
            "bpp_delta": {"max_abs": max(map(abs, bpp)), "mean": statistics.mean(bpp)},
            "max_abs_pixel_difference": max_pixel, "identical_files": identical}


def table(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Measured by `{result['command']}` at revision `{result['git_revision'][:12]}`"
        f"{' with model `' + result['model']['id'] + '`' if 'model' in result else ''} on {m['cpus']} CPU cores, "
        f"torch threads {m['torch_threads']}, device {m['device']}; load average {m['load_before'][0]:.1f} before and "
        f"{m['load_after'][0]:.1f} after{' (machine shared with other jobs: times are noisy)' if m['shared'] else ''}; "
        f"source: `benchmarks/results/speed.json`. Medians of {result['repeats']} runs after a warm-up "
        f"({result['large_repeats']} for the large image); peak RSS of a process that does only that "
        f"(a process that merely loads torch and the model peaks at {result['baseline_rss'] / 2**20:.0f} MiB).",
        "",
        "| image | codec | torch threads | bpp | encode | decode | peak RSS encode / decode |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, entry in result["images"].items():
        w, h = entry["size"]
        for codec_name in ("neurocodec", "jpeg", "webp", "avif"):
            c = entry.get(codec_name)
            if not c:
                continue
            threads = entry.get("run", m)["torch_threads"] if codec_name == "neurocodec" else "–"
            label = f"neurocodec, effort {c['effort']}" if c.get("effort") else codec_name
            lines.append(f"| {key} ({w}×{h}) | {label} | {threads} | {c['bpp']:.3f} | {_ms(c['encode']['median_s'])} "
                         f"| {_ms(c['decode']['median_s'])} | {c['encode']['peak_rss'] / 2**20:,.0f} / "
                         f"{c['decode']['peak_rss'] / 2**20:,.0f} MiB |")
    old = result["images"].get("large", {}).get("run", {})
    if old.get("git_revision", result["git_revision"]) != result["git_revision"]:
        lines += ["", f"The large image's rows come from an earlier run: `{old['command']}` at revision "
                  f"`{old['git_revision'][:12]}`, load average {old['load_before'][0]:.1f} before it."]
    kodak = result["images"].get("kodak", {}).get("neurocodec", {}).get("decode", {})
    ratio = kodak.get("decode_over_bare_synthesis")
    if ratio:
        bare = kodak["bare_synthesis_times"]
        lines += ["", f"Kodak decode / bare synthesis in the same run: **{ratio['g_s_decoder_kernels']:.2f}×** the "
                  f"decoder's own channels-last `g_s` alone ({_ms(statistics.median(bare['g_s_decoder_kernels']))}), "
                  f"{ratio['g_s_trained_module']:.2f}× the trained `g_s` module with torch's default kernels "
                  f"({_ms(statistics.median(bare['g_s_trained_module']))})."]
    s = result.get("seams")
    if s:
        lines += ["", f"Seams: tiled ({s['tile_latents']}-latent tiles; halo {s['halo_latents']} latents for g_a, "
                  f"{s.get('synthesis_halo_latents', s['halo_latents'])} for g_s) minus untiled "
                  f"PSNR on {s['images']} Kodak images at quality {s['quality']}: at most "
                  f"{s['psnr_delta_db']['max_abs']:.4f} dB (mean {s['psnr_delta_db']['mean']:+.5f} dB); bpp differs by "
                  f"at most {s['bpp_delta']['max_abs']:.5f}; {s['identical_files']}/{s['images']} files byte-identical, "
                  f"pixels differ by at most {s['max_abs_pixel_difference']}."]
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def write_table(result: dict) -> None:
    readme = ROOT / "README.md"
    block = f"{START}\n{table(result)}\n{END}"
    new, n = re.subn(re.escape(START) + ".*?" + re.escape(END), lambda _: block, readme.read_text(), flags=re.S)
    if n != 1:
        raise SystemExit(f"README.md must contain exactly one {START} ... {END} block")
    readme.write_text(new)
    print("README.md speed table updated")


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default=None, help="cpu or cuda [default: cpu]")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--large-repeats", type=int, default=1)
    p.add_argument("--no-large", action="store_true", help="skip the 24 MP image (keeps the previous entry)")
    p.add_argument("--shared", action="store_true", help="record that other jobs were using the machine")
    p.add_argument("--name", default="speed", help="results file stem; only 'speed' updates the README")
    p.add_argument("--effort", type=int, choices=(0, 1, 2), default=0,  # refine.EFFORTS; no torch import here
                   help="neurocodec's encoder effort (refine.py); only effort 0, the default, may write 'speed'")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--child", nargs=2, metavar=("OP", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--no-warmup", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.repeats, args.threads, args.device,
                               not args.no_warmup, args.effort)))
        return None
    if args.effort and args.name == "speed" and not args.table_only:
        p.error("--effort 1 or 2 needs its own --name (e.g. speed-effort1): speed.json is the default encoder's")
    out_path = HERE / "results" / f"{args.name}.json"
    if args.table_only:
        write_table(json.loads(out_path.read_text()))
        return None

    import torch
    from PIL import Image

    import neurocodec
    from neurocodec import zoo

    previous = json.loads(out_path.read_text()) if out_path.exists() else {}
    result = {
        "command": command(argv),
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": args.threads,
                    "device": args.device or "cpu", "pillow": Image.__version__,
                    "neurocodec": neurocodec.__version__, "load_before": list(os.getloadavg()),
                    "shared": args.shared},
        "model": {"id": zoo.DEFAULT_MODEL, "weights_sha256": zoo.card(zoo.DEFAULT_MODEL)["sha256"]},
        "effort": args.effort,
        "repeats": args.repeats,
        "large_repeats": args.large_repeats,
        "images": {},
    }
    kodak_files = sorted(KODAK.glob("*.png"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result["baseline_rss"] = run_child("baseline", kodak_files[0], args, 1)["peak_rss"]
        print(f"kodak: {kodak_files[0].name}", flush=True)
        result["images"]["kodak"] = image_set("kodak", kodak_files[0], work, args, args.repeats, True)
        result["images"]["kodak"]["source"] = str(kodak_files[0].relative_to(ROOT.parent))
        print("seams on Kodak", flush=True)
        result["seams"] = seams(kodak_files, tile=16)
        if args.no_large:
            if "large" in previous.get("images", {}):
                large = result["images"]["large"] = previous["images"]["large"]
                large.setdefault("run", {"command": previous["command"], "git_revision": previous["git_revision"],
                                         "torch_threads": previous["machine"]["torch_threads"],
                                         "load_before": previous["machine"]["load_before"]})
        else:
            src = sorted(PHOTOS.glob("*.jpg"))[0]
            big = work / "large.png"
            with Image.open(src) as im:
                im.convert("RGB").resize(LARGE_SIZE, Image.LANCZOS).save(big, compress_level=1)
            print(f"large: {src.name} upscaled to {LARGE_SIZE}", flush=True)
            result["images"]["large"] = image_set("large", big, work, args, args.large_repeats, False)
            result["images"]["large"]["source"] = f"{src.relative_to(ROOT.parent)} upscaled (Lanczos) to 6000x4000"
    result["machine"]["load_after"] = list(os.getloadavg())
    run = {"command": result["command"], "git_revision": result["git_revision"], "torch_threads": args.threads,
           "load_before": result["machine"]["load_before"], "model": result["model"]["id"]}
    for entry in result["images"].values():
        entry.setdefault("run", run)
    write_result(out_path, result)
    print(f"wrote {out_path}")
    if args.name == "speed":
        write_table(result)
    return result


if __name__ == "__main__":
    main()
