"""Schemathesis over every operation, with every check on, against the real app (tests/fuzzing.py): bounded and
seeded here; `make fuzz` runs the same harness longer (PARKGRID_FUZZ_EXAMPLES, PARKGRID_FUZZ_PHASES)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.settings import Settings
from tests.fuzzing import fuzz

EXAMPLES = int(os.environ.get("PARKGRID_FUZZ_EXAMPLES", "8"))
PHASES = os.environ.get("PARKGRID_FUZZ_PHASES", "examples,coverage,fuzzing").split(",")
SEED = int(os.environ.get("PARKGRID_FUZZ_SEED", "20"))


@pytest.mark.timeout(int(os.environ.get("PARKGRID_FUZZ_TIMEOUT", "170")) + 60)
def test_schemathesis_finds_no_failures(settings: Settings, tmp_path: Path) -> None:
    assert settings.rate_limits == "off"
    run = fuzz(settings, tmp_path, max_examples=EXAMPLES, seed=SEED, phases=PHASES,
               timeout=float(os.environ.get("PARKGRID_FUZZ_TIMEOUT", "170")))
    print(run.output[-6000:])
    assert run.returncode == 0, run.output[-12000:]
