"""Where a benchmark result came from, and how it is written down.

``git_revision`` (marked +dirty if src/ has local changes) and ``command`` (the command line,
with the script's path from the repository root, so it reruns from there) go into every results
file; ``write_result`` writes one whole or not at all.

A module of its own, importing nothing heavy, so that light child processes (speed.py's Pillow
runs) can use it without loading torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_revision() -> str:
    try:
        rev = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src"], cwd=ROOT).returncode != 0
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command(argv: list[str] | None) -> str:
    """``python benchmarks/NAME.py ARGS``: ``argv`` as given to ``main``, or the process's own."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return "python " + " ".join([script.as_posix(), *(argv if argv is not None else sys.argv[1:])])


def write_result(path: Path, result: dict, indent: int = 1) -> None:
    """Write ``result`` as JSON through a temporary file, so an interrupted run leaves the previous
    results file intact rather than half of a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=indent) + "\n")
    tmp.replace(path)
