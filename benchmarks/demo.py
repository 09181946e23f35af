"""The README's opening example, recorded: ``neurocodec encode`` and ``decode`` of the photo
matplotlib ships (``grace_hopper.jpg``), as ``scripts/demo.sh`` runs them, with the lines they
print. Writes ``results/demo.json``; the README quotes its ``output``.

    python benchmarks/demo.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from provenance import command, git_revision, write_result

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=RESULTS / "demo.json")
    args = p.parse_args(argv)

    import neurocodec
    from matplotlib import cbook

    from neurocodec import zoo

    src = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    cli = [sys.executable, "-m", "neurocodec.cli"]
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        nac, png = Path(tmp) / "grace_hopper.nac", Path(tmp) / "grace_hopper.png"
        for step in (["encode", str(src), "-o", str(nac)], ["decode", str(nac), "-o", str(png)]):
            out = subprocess.run(cli + step, capture_output=True, text=True, check=True).stdout
            lines += [f"$ neurocodec {step[0]} {Path(step[1]).name} -o {Path(step[3]).name}"]
            lines += [line.replace(str(src.parent) + "/", "").replace(tmp + "/", "") for line in out.splitlines()]
        info = neurocodec.read_info(nac.read_bytes())
    result = {
        "command": command(argv), "git_revision": git_revision(), "neurocodec": neurocodec.__version__,
        "model": {"id": zoo.DEFAULT_MODEL, "weights_sha256": zoo.card(zoo.DEFAULT_MODEL)["sha256"]},
        "image": "grace_hopper.jpg from matplotlib's sample data", "info": info, "output": lines,
    }
    write_result(args.out, result)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
