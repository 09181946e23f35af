"""Resident memory of this process, for the benchmarks that report peaks.

Linux keeps the high-water mark of the resident set in ``/proc/self/status`` (VmHWM) and lets a
process restart it from its current RSS (``echo 5 > /proc/self/clear_refs``), so one process can
measure several operations' peaks in turn. ``getrusage``'s ru_maxrss cannot be restarted and
survives exec (it starts at the RSS of the parent that forked the child): it is only the
fallback elsewhere, and an upper bound there. Imports nothing heavy, like ``provenance``.
"""

from __future__ import annotations

import resource
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
    return high if high is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Peak:
    bytes: int | None = None
    """The high-water mark above the RSS at the start; None off Linux."""


@contextmanager
def peak_above_start() -> Iterator[Peak]:
    """``with peak_above_start() as p: work()`` sets ``p.bytes`` to the most memory ``work`` held
    at once beyond what the process already held."""
    peak = Peak()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        yield peak
        return
    before = status("VmRSS:")
    yield peak
    high = status("VmHWM:")
    peak.bytes = None if high is None or before is None else high - before
