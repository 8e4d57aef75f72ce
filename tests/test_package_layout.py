"""The package is grouped by stage; the flat names that users and the README use still import."""

import importlib
import subprocess
import sys

import pytest

import dimcollapse


@pytest.mark.parametrize("flat, real", sorted(dimcollapse.ALIASES.items()))
def test_flat_name_is_the_stage_module(flat: str, real: str) -> None:
    alias = importlib.import_module(f"dimcollapse.{flat}")
    assert alias is importlib.import_module(real)
    assert alias.__name__ == real and alias.__spec__.name == real


def test_alias_first_import_in_a_fresh_process() -> None:
    """Importing the flat name first must execute the module once, under its real name."""
    code = (
        "import sys, dimcollapse.spectrum as s; "
        "assert s.__name__ == 'dimcollapse.analysis.spectrum', s.__name__; "
        "assert sys.modules['dimcollapse.analysis.spectrum'] is s; "
        "from dimcollapse.metrics import metrics_row; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_unknown_flat_name_still_fails() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("dimcollapse.no_such_stage")
