"""Long fuzz run over the .nac container parser and the full decoder (docs/security.md).

    nice -n 10 python benchmarks/fuzz.py --container 1000000 --decodes 10000 --max-minutes 25

Mutants come from ``tests/fuzzing.py`` applied to the seed corpus in ``tests/corpus``: raw byte
mutations for ``container.unpack``, re-packed field and stream mutations (valid CRCs) for
``neurocodec.decode``. An execution is a *crash* if it raises anything but a ``NacError``, a *hang*
if it takes over 5 s. Address space is capped at (size after warm-up + 1 GiB) with RLIMIT_AS, so
any allocation over 1 GiB fails and is counted as a crash; decodes use
``Limits(max_memory_bytes=1 GiB)`` so the codec's own memory check is what stops big declared
images. Writes ``benchmarks/results/fuzz.json`` with the command, git revision and figures;
crashing and slow (over 5 s) inputs are saved next to it in ``fuzz-crashes/``. The JSON is rewritten as the run
goes, so a run stopped by ``--max-minutes`` (or killed) still leaves its figures.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import neurocodec  # noqa: E402
from neurocodec import container, zoo  # noqa: E402
from neurocodec.container import Limits  # noqa: E402
from neurocodec.errors import NacError  # noqa: E402

import fuzzing  # noqa: E402
from provenance import write_result  # noqa: E402

GIB = 2**30
HANG_SECONDS = 5.0


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


class Tally:
    def __init__(self, name: str, crash_dir: Path):
        self.name, self.crash_dir = name, crash_dir
        self.executions = self.crashes = self.hangs = self.accepted = 0
        self.max_seconds = 0.0
        self.errors: Counter[str] = Counter()
        self.crash_examples: list[str] = []

    def run(self, fn, data: bytes) -> None:
        t = time.perf_counter()
        try:
            fn(data)
            self.accepted += 1
        except NacError as e:
            self.errors[f"{type(e).__name__}: {' '.join(str(e).split()[:3])}"] += 1
        except Exception as e:  # noqa: BLE001 - anything else is what we are looking for
            self.crashes += 1
            self.crash_dir.mkdir(parents=True, exist_ok=True)
            path = self.crash_dir / f"{self.name}-{self.crashes}.nac"
            path.write_bytes(data)
            if len(self.crash_examples) < 20:
                self.crash_examples.append(f"{path.name}: {type(e).__name__}: {str(e)[:200]}")
        dt = time.perf_counter() - t
        self.executions += 1
        self.max_seconds = max(self.max_seconds, dt)
        if dt > HANG_SECONDS:
            self.hangs += 1
            self.crash_dir.mkdir(parents=True, exist_ok=True)
            (self.crash_dir / f"{self.name}-slow-{self.hangs}.nac").write_bytes(data)

    def summary(self) -> dict:
        return {
            "executions": self.executions, "crashes": self.crashes, "hangs_over_5s": self.hangs,
            "accepted_without_error": self.accepted, "max_seconds_per_execution": round(self.max_seconds, 4),
            "crash_examples": self.crash_examples, "top_errors": dict(self.errors.most_common(25)),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--container", type=int, default=1_000_000, help="container.unpack executions")
    ap.add_argument("--decodes", type=int, default=10_000, help="full neurocodec.decode executions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fuzz.json")
    ap.add_argument("--max-minutes", type=float, default=25.0, help="stop early (and say so) after this wall time")
    args = ap.parse_args()
    deadline = time.time() + 60 * args.max_minutes
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "tests", "benchmarks/fuzz.py"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()

    seeds = fuzzing.load_seeds()
    parsed = [container.unpack(s) for s in seeds]
    net = zoo.load().net
    mn = (net.config.m, net.config.n)
    limits = Limits(max_memory_bytes=GIB)
    for s in seeds:  # warm-up: thread pools and allocator arenas exist before the cap is set
        neurocodec.decode(s)
    cap = _vm_size() + GIB
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.RLIM_INFINITY))

    crash_dir = args.out.parent / "fuzz-crashes"
    rng = random.Random(args.seed)
    started = time.time()
    parse = Tally("container", crash_dir)
    decode = Tally("decode", crash_dir)
    seconds = {"container": 0.0, "decode": 0.0}

    def report(final: bool) -> dict:
        result = {
            "command": " ".join(["python", "benchmarks/fuzz.py", *sys.argv[1:]]),
            "git_revision": rev + ("-dirty" if dirty else ""),
            "finished": final,
            "stopped_early": final and (parse.executions < args.container or decode.executions < args.decodes),
            "seed": args.seed,
            "corpus_files": len(seeds),
            "address_space_cap_bytes": cap,
            "decode_memory_limit_bytes": limits.max_memory_bytes,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "container": {**parse.summary(), "seconds": round(seconds["container"], 1)},
            "decode": {**decode.summary(), "seconds": round(seconds["decode"], 1)},
            "total_seconds": round(time.time() - started, 1),
        }
        write_result(args.out, result, indent=2)
        return result

    for i in range(args.container):
        if i % 100_000 == 0:
            seconds["container"] = time.time() - started
            report(False)
            if time.time() > deadline:
                break
        parse.run(container.unpack, fuzzing.mutate_bytes(rng, rng.choice(seeds), seeds))
    seconds["container"] = time.time() - started

    t = time.time()
    for i in range(args.decodes):
        if i % 500 == 0:
            seconds["decode"] = time.time() - t
            report(False)
            if time.time() > deadline:
                break
        if i % 5 == 0:  # a fifth raw byte mutants (mostly with fixed CRCs), the rest field mutants
            data = fuzzing.mutate_bytes(rng, rng.choice(seeds), seeds)
        else:
            data = fuzzing.mutate_fields(rng, rng.choice(parsed), parsed, mn)
        decode.run(lambda d: neurocodec.decode(d, limits=limits), data)
    seconds["decode"] = time.time() - t
    result = report(True)
    print(json.dumps({k: v for k, v in result.items() if k not in ("container", "decode")}, indent=2))
    for part in ("container", "decode"):
        r = result[part]
        print(f"{part}: {r['executions']} executions, {r['crashes']} crashes, {r['hangs_over_5s']} hangs, "
              f"max {r['max_seconds_per_execution']} s, {r['seconds']} s")


if __name__ == "__main__":
    main()
