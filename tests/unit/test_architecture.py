"""The booking package's import contracts (pyproject.toml, [tool.importlinter]) hold, and are able to fail.

Both contracts are checked by import-linter's own command, as `lint-imports` runs them. The negative controls run
the same command on a copy of the package with one import added back, the kind the split of booking/service.py
removed: a cycle hidden inside a function, and settlement depending on the reservation lifecycle again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CONTRACTS = ("booking-acyclic", "booking-layers")


def _lint_imports(package_parent: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's configuration, finding `booking` under `package_parent` (no cache)."""
    chosen = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache", "--no-logo", *chosen, str(ROOT / "pyproject.toml")],
        cwd=package_parent, env={**os.environ, "PYTHONPATH": str(package_parent)},
        capture_output=True, text=True, timeout=60, check=False)


def test_the_booking_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


BACK_IMPORTS = {
    # the cycle the split removed, hidden in a function as it used to be
    "deps-imports-the-lifecycle-in-a-function": (
        "deps.py", "\n\nasync def _back() -> None:\n    from booking.transitions import cancel  # noqa: F401\n"),
    # settlement depends on deps, never on the lifecycle module that calls it
    "settlement-imports-the-lifecycle": ("settlement.py", "\nfrom booking.transitions import confirm  # noqa: E402\n"),
}


@pytest.mark.parametrize("contract", CONTRACTS)
@pytest.mark.parametrize("back_import", sorted(BACK_IMPORTS))
def test_negative_control_an_import_back_breaks_the_contract(tmp_path: Path, back_import: str, contract: str) -> None:
    shutil.copytree(ROOT / "booking", tmp_path / "booking", ignore=shutil.ignore_patterns("__pycache__"))
    assert _lint_imports(tmp_path, contract).returncode == 0  # the copy alone keeps it
    module, added = BACK_IMPORTS[back_import]
    with (tmp_path / "booking" / module).open("a") as source:
        source.write(added)

    result = _lint_imports(tmp_path, contract)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Contracts: 0 kept, 1 broken." in result.stdout
    broken = result.stdout.split("Broken contracts", 1)[1]  # names both ends of the import added back
    assert f".{module.removesuffix('.py')}" in broken and ".transitions" in broken, broken
