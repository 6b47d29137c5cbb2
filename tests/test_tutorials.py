from __future__ import annotations

import runpy
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.py"))
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCDX_TUTORIAL_EPOCHS", "2")
    monkeypatch.setenv(
        "SCDX_TUTORIAL_DATA",
        str(SHARED / "neurips2021_bmmc_cite_starter" / "neurips2021_bmmc_cite_starter.h5mu"),
    )
    runpy.run_path(str(path), run_name="__main__")
    assert (tmp_path / "scdx_cite_model" / "model.pt").exists()
