"""Regenerate the README's results table from benchmarks/results/kodak.json (never by hand),
and copy the measured figures into the model card.

    python benchmarks/report.py [kodak.json [other-results.json ...]]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- rd-table:start -->", "<!-- rd-table:end -->"


def label(result: dict) -> str:
    """The dataset, and how the run differs from the default protocol (encoder effort, shift)."""
    how = []
    if result.get("effort"):
        how.append(f"encoder effort {result['effort']}")
    if result.get("shift_px"):
        how.append(f"every image shifted {result['shift_px']} px")
    return result["dataset"] + (f", {', '.join(how)}" if how else "")


def summary(result: dict, source: str, main_model: str) -> str:
    """One line per further results file: BD-rates vs JPEG of every codec measured there, naming
    the model where it is not the main table's (a figure not yet re-measured for a new model)."""
    bds = ", ".join(f"{name} {entry['bd_rate_vs_jpeg_percent']:+.1f} %" for name, entry in result["codecs"].items()
                    if name != "jpeg" and entry.get("bd_rate_vs_jpeg_percent") is not None)
    t = result["codecs"]["neurocodec"]["timing"]
    other = "" if result["model"]["id"] == main_model else f", model {result['model']['id']} (not re-measured)"
    return (f"- {result['images']} images of {label(result)}{other}: BD-rate vs JPEG {bds}; neurocodec encode / "
            f"decode {t['encode_s'] * 1000:.0f} / {t['decode_s'] * 1000:.0f} ms (`{source}`).")


def table(result: dict, source: str) -> str:
    lines = [
        f"Measured by `{result['command']}` at revision `{result['git_revision'][:12]}`"
        f"{' plus uncommitted changes in src/' if result['git_revision'].endswith('+dirty') else ''} "
        f"({result['images']} images of {result['dataset']}, torch threads {result['machine']['torch_threads']}; "
        f"source: `{source}`).",
        "",
        "| codec | BD-rate vs JPEG | bpp range | PSNR range (dB) | encode (ms) | decode (ms) |",
        "| --- | ---: | --- | --- | ---: | ---: |",
    ]
    for name, entry in result["codecs"].items():
        pts = entry["points"]
        bd = entry.get("bd_rate_vs_jpeg_percent")
        t = entry["timing"]
        lines.append(
            f"| {name} | {'%+.1f %%' % bd if bd is not None else 'n/a'} "
            f"| {min(p['bpp'] for p in pts):.3f} – {max(p['bpp'] for p in pts):.3f} "
            f"| {min(p['psnr'] for p in pts):.2f} – {max(p['psnr'] for p in pts):.2f} "
            f"| {t['encode_s'] * 1000:.0f} | {t['decode_s'] * 1000:.0f} |"
        )
    neuro = result["codecs"].get("neurocodec")
    if neuro:
        lines += ["", "neurocodec points (each decoded from its file; PSNR equal to the encoder's in "
                  f"{sum(p['decode_psnr_mismatches'] == 0 for p in neuro['points'])}/{len(neuro['points'])} settings):", "",
                  "| quality | bpp | PSNR (dB) |", "| ---: | ---: | ---: |"]
        lines += [f"| {p['quality']} | {p['bpp']:.3f} | {p['psnr']:.2f} |" for p in neuro["points"]]
    refs = result.get("reference_bd_rate_vs_measured_jpeg_percent")
    if refs:
        lines += ["", "Reference curves (`../shared/reference/kodak-rd.json`), BD-rate against the reference JPEG curve: "
                  + ", ".join(f"{k} {v:+.1f} %" for k, v in refs.items() if v is not None and "jpeg (" not in k) + "."]
    return "\n".join(lines)


def update_card(result: dict, source: str) -> None:
    """Copy the measured figures into the model card of the weights that were measured."""
    model = result["model"]["id"]
    card_path = ROOT / "src" / "neurocodec" / "weights" / f"{model}.json"
    card = json.loads(card_path.read_text())
    if card["sha256"] != result["model"]["weights_sha256"]:
        print(f"{card_path.name}: measured weights differ from the installed ones; card left alone")
        return
    neuro = result["codecs"]["neurocodec"]
    card.setdefault("measured", {})[label(result)] = {
        "source": source, "git_revision": result["git_revision"], "images": result["images"],
        "bd_rate_vs_pillow_jpeg_percent": neuro.get("bd_rate_vs_jpeg_percent"),
        "points": [{"quality": p["quality"], "bpp": round(p["bpp"], 4), "psnr": round(p["psnr"], 3)}
                   for p in neuro["points"]],
        "encode_s": neuro["timing"]["encode_s"], "decode_s": neuro["timing"]["decode_s"],
        "torch_threads": result["machine"]["torch_threads"],
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"{card_path.name}: measured figures for {label(result)} updated")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="*", type=Path,
                   help="kodak.json first (the README table), then other results files (summary lines)")
    paths = p.parse_args(argv).results or [ROOT / "benchmarks" / "results" / "kodak.json"]
    path = paths[0]
    result = json.loads(path.read_text())
    extras = []
    for extra in paths[1:]:
        source = str(extra.resolve().relative_to(ROOT))
        other = json.loads(extra.read_text())
        update_card(other, source)
        extras.append(summary(other, source, result["model"]["id"]))
    update_card(result, str(path.resolve().relative_to(ROOT)))
    readme = ROOT / "README.md"
    text = readme.read_text()
    body = table(result, path.resolve().relative_to(ROOT))
    if extras:
        body += "\n\nWith a slower encoder, and on other photos, never trained on:\n\n" + "\n".join(extras)
    block = f"{START}\n{body}\n{END}"
    new, n = re.subn(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    if n != 1:
        raise SystemExit(f"README.md must contain exactly one {START} ... {END} block")
    readme.write_text(new)
    print(f"README.md table updated from {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
