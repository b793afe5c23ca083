"""The pages that only show results (worklist, patient, model card, administration, lesion over time, clinic record)
never load torch: a fresh app process serves them without the model's 12 s import (issue 25)."""

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.slow  # a couple of seconds or more: the full run has it
def test_pages_that_do_not_run_the_model_never_import_torch():
    out = subprocess.run([sys.executable, str(HERE / "pages_without_torch.py")], capture_output=True, text=True,
                         cwd=HERE.parent, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pages ran" in out.stdout, out.stdout
    assert out.stdout.strip().endswith("torch not loaded"), out.stdout
