from __future__ import annotations

from pathlib import Path

import pytest

from scdx_scvi import cli
from scdx_scvi.model import SCDX


def test_demo_reports_held_out_reconstruction(tmp_path, capsys, monkeypatch):
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    monkeypatch.setattr(
        cli, "DEFAULT_DEMO_DATA", data / "neurips2021_bmmc_multiome_starter" /
        "neurips2021_bmmc_multiome_starter.h5mu",
    )  # fmt: skip
    out = tmp_path / "model"
    assert cli.main(["demo", "--max-epochs", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for key in ("rna_pearson_per_gene", "atac_auroc_per_peak", "reconstruction_loss_atac"):
        assert key in printed
    assert "404 training and 96 held-out cells" in printed
    assert SCDX.load(out, accelerator="cpu").is_trained


def test_demo_falls_back_to_synthetic_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "DEFAULT_DEMO_DATA", tmp_path / "absent.h5mu")
    assert cli.main(["demo", "--max-epochs", "1", "--out", str(tmp_path / "m")]) == 0
    assert "synthetic_iid" in capsys.readouterr().out


def test_demo_with_a_missing_file(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        cli.main(["demo", "--data", str(tmp_path / "nope.h5mu")])
