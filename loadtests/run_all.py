"""`make bench`: run every loadtests/bench_*.py in turn; each prints its figures beside a same-run baseline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    only = set(sys.argv[1:])
    failures = 0
    for script in sorted(here.glob("bench_*.py")):
        name = script.stem
        if only and name not in only:
            continue
        print(f"\n=== {name} ===", flush=True)
        result = subprocess.run([sys.executable, "-m", f"loadtests.{name}"], cwd=here.parent, check=False)
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
