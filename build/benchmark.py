"""Size and start-up time of cisfix.pyz, each beside bare `python -c pass` measured in the same run.

    python3 build/benchmark.py [PYZ] [--runs N]        (default PYZ: dist/cisfix.pyz)

Runs the archive with the interpreter running this script. First run: each sample extracts into a
fresh SHIV_ROOT (what an operator waits for once per node and build). Warm: the same root, already
extracted (every later run). Medians of N samples, interleaved with the bare interpreter's so that
machine load affects both alike. Targets (issue 3): archive under 2 MB; warm --version within
0.15 s of bare python.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE_TARGET = 2 * 1024 * 1024
WARM_TARGET = 0.15


def elapsed(args, env) -> float:
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def paired(runs, pyz_args, env_for_run):
    """Medians of (archive, bare python) over `runs` interleaved samples."""
    bare = [sys.executable, "-c", "pass"]
    archive, baseline = [], []
    for i in range(runs):
        archive.append(elapsed(pyz_args, env_for_run(i)))
        baseline.append(elapsed(bare, os.environ))
    return statistics.median(archive), statistics.median(baseline)


def line(label, archive, bare) -> str:
    return (f"{label:<22}{archive * 1000:8.1f} ms   python -c pass {bare * 1000:6.1f} ms   "
            f"+{(archive - bare) * 1000:.1f} ms  x{archive / bare:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyz", nargs="?", default=str(Path(__file__).resolve().parents[1] / "dist/cisfix.pyz"))
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    pyz = Path(options.pyz).resolve()
    version = [sys.executable, str(pyz), "--version"]

    size = pyz.stat().st_size
    print(f"{pyz} with {sys.executable} (Python {sys.version.split()[0]}), {options.runs} runs each")
    print(f"{'archive size':<22}{size / 1e6:8.2f} MB  target < {SIZE_TARGET / 2**20:.0f} MiB: "
          f"{'met' if size < SIZE_TARGET else 'MISSED'}")

    with tempfile.TemporaryDirectory() as tmp:
        first = paired(options.runs, version, lambda i: dict(os.environ, SHIV_ROOT=f"{tmp}/first-{i}"))
        print(line("first run (extract)", *first))

        warm_env = dict(os.environ, SHIV_ROOT=f"{tmp}/warm")
        elapsed(version, warm_env)  # extract once
        warm = paired(options.runs, version, lambda i: warm_env)
        verdict = "met" if warm[0] - warm[1] <= WARM_TARGET else "MISSED"
        print(line("warm --version", *warm) + f"   target +{WARM_TARGET * 1000:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
