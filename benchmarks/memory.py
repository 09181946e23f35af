"""Resident memory of this process, for the benchmarks that report peaks.

Linux keeps the high-water mark of the resident set in ``/proc/self/status`` (VmHWM) and lets a
process restart it from its current RSS (``echo 5 > /proc/self/clear_refs``), so one process can
measure several operations' peaks in turn. ``getrusage``'s ru_maxrss cannot be restarted and
survives exec (it starts at the RSS of the parent that forked the child): it is only the
fallback elsewhere, and an upper bound there. Imports nothing heavy, like ``provenance``.
"""

from __future__ import annotations

import resource
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


def status(field: str) -> int | None:
    """A ``/proc/self/status`` field such as ``"VmRSS:"`` in bytes; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes."""
    high = status("VmHWM:")
    if high is not None:
        return high
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB elsewhere


@dataclass
class Peak:
    bytes: int | None = None
    """The high-water mark above the RSS at the start; None off Linux."""


@contextmanager
def peak_above_start() -> Iterator[Peak]:
    """``with peak_above_start() as p: work()`` sets ``p.bytes`` to the most memory ``work`` held
    at once beyond what the process held before it. It restarts the process' high-water mark, so
    ``peak_rss`` afterwards no longer gives the lifetime peak, and it does not nest. Memory that
    earlier work freed but the allocator kept counts as held before, so a peak measured after
    other work can come out low: measure in a fresh process where that matters."""
    peak = Peak()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        restarted = True
    except OSError:
        restarted = False
    before = status("VmRSS:") if restarted else None
    yield peak
    high = status("VmHWM:") if restarted else None
    peak.bytes = None if high is None or before is None else high - before
