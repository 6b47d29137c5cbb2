"""The tutorials: each script runs (quick settings), and its stored notebook matches and ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
CITE_STARTER = (
    ROOT.parent / "shared" / "data" / "neurips2021_bmmc_cite_starter"
    / "neurips2021_bmmc_cite_starter.h5mu"
)  # fmt: skip


def test_every_tutorial_is_a_percent_script():
    assert TUTORIALS
    for path in TUTORIALS:
        assert path.read_text().count("# %%") >= 2, f"{path.name} is not a jupytext percent script"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    if "SCDX_TUTORIAL_DATA" in path.read_text() and not CITE_STARTER.exists():
        pytest.fail(f"{CITE_STARTER} is missing: the tests need ../shared/data beside the repo.")
    env = {
        **os.environ,
        "SCDX_TUTORIAL_QUICK": "1",
        "SCDX_TUTORIAL_DATA": str(CITE_STARTER),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    result = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    # every tutorial that trains a model ends up with output on stdout
    assert result.stdout.strip()


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_stored_notebook_is_executed_source(path):
    jupytext = pytest.importorskip("jupytext")
    notebook_path = path.with_suffix(".ipynb")
    assert notebook_path.exists(), f"{notebook_path.name} is missing: run tutorials/build.py"
    stored = jupytext.read(notebook_path)
    source = jupytext.read(path)

    def cells(notebook):
        return [(c.cell_type, c.source.strip()) for c in notebook.cells]

    assert cells(stored) == cells(source), f"{notebook_path.name} is stale: run tutorials/build.py"
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "not executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert any(c.outputs for c in code)
