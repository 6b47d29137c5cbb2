"""The documentation: the API page covers the public API, and the Sphinx build has no warnings."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PUBLIC = ["data", "datasets", "diffusion", "metrics", "model", "module", "nn", "pl", "train"]


def _documented_names() -> set[str]:
    """``scdx_scvi.<package>.<name>`` entries of the API page (autosummary or ``py:data``)."""
    text = (DOCS / "api.md").read_text()
    names = {f"scdx_scvi.{m}" for m in re.findall(r"^ {3}(\w+\.\w+)$", text, re.MULTILINE)}
    names |= set(re.findall(r"^\.\. py:data:: (scdx_scvi\.\w+\.\w+)$", text, re.MULTILINE))
    return names


@pytest.mark.parametrize("package", PUBLIC)
def test_api_page_lists_every_public_name(package):
    module = importlib.import_module(f"scdx_scvi.{package}")
    documented = _documented_names()
    missing = [n for n in module.__all__ if f"scdx_scvi.{package}.{n}" not in documented]
    assert not missing, f"docs/api.md does not document scdx_scvi.{package}: {missing}"


def test_api_page_names_exist():
    for name in _documented_names():
        package, attribute = name.rsplit(".", 1)
        assert hasattr(importlib.import_module(package), attribute), name


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    out = tmp_path / "html"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html"]
    command += ["-d", str(tmp_path / "doctrees"), str(DOCS), str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]

    for page in ["index", "installation", "quickstart", "tutorials", "user_guide", "api"]:
        assert (out / f"{page}.html").is_file(), page
    # every stored tutorial notebook is a page, with its outputs
    notebooks = sorted((ROOT / "tutorials").glob("*.ipynb"))
    assert notebooks
    for notebook in notebooks:
        html = (out / "tutorials" / f"{notebook.stem}.html").read_text()
        assert "cell_output" in html, notebook.name
    # the model page documents the model's own methods, its mixins' and scvi-tools' save/load
    model_page = (out / "generated" / "scdx_scvi.model.SCDX.html").read_text()
    for method in ["setup_mudata", "train", "generate", "get_translated_modality", "save", "load"]:
        assert f'id="scdx_scvi.model.SCDX.{method}"' in model_page, method
    # the citation of the model docstring resolves to the bibliography
    assert "Luo2026" not in re.sub(r"<[^>]+>", "", model_page)
