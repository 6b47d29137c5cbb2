from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import train_tiny

from scdx_scvi.model import _translation_spread as spread
from scdx_scvi.model._translation_spread import (
    FACTORS,
    LEVELS,
    MAX_SCORED_VALUES,
    MIN_CELLS,
    choose_factor,
    fit_translation_spread,
    n_fit_cells,
)
from scdx_scvi.model._validation import MAX_CELLS, validation_minibatches


@pytest.fixture(scope="module")
def trained():
    return train_tiny(("rna", "atac"))


@pytest.fixture
def diffusion(trained):
    """The trained model's diffusion, its fitted spread restored after the test."""
    diffusion = trained[0].module.diffusion
    fitted = diffusion.translation_spread.clone()
    yield diffusion
    diffusion.translation_spread.copy_(fitted)


def test_the_factor_whose_coverage_is_nearest_the_levels_is_chosen():
    coverage = np.tile(np.array(LEVELS) - 0.3, (len(FACTORS), 1))
    coverage[FACTORS.index(2.0)] = np.array(LEVELS) + 0.01
    assert FACTORS[choose_factor(coverage)] == 2.0
    # among equals, the factor nearest 1 (the learned spread)
    assert FACTORS[choose_factor(np.tile(LEVELS, (len(FACTORS), 1)))] == 1.0


def test_train_diffusion_fits_one_factor_per_direction_on_validation_cells(trained):
    model, _ = trained
    diffusion = model.module.diffusion
    scores = model.translation_spread_scores_
    assert set(scores) == {"rna->atac", "atac->rna"}
    for direction, fitted in scores.items():
        source, target = direction.split("->")
        i, j = diffusion.modalities.index(source), diffusion.modalities.index(target)
        assert fitted["factor"] in FACTORS
        assert float(diffusion.translation_spread[i, j]) == pytest.approx(fitted["factor"])
        coverage = np.array(list(fitted["coverage"].values()))
        assert coverage.shape == (len(FACTORS), len(LEVELS))
        assert ((coverage >= 0) & (coverage <= 1)).all()
        error = np.abs(coverage - LEVELS).sum(1)
        assert error[FACTORS.index(fitted["factor"])] <= error[FACTORS.index(1.0)]
    assert torch.diagonal(diffusion.translation_spread).eq(1.0).all()


def test_calibrated_samples_lie_the_factor_farther_from_the_conditional_mean(trained, diffusion):
    model, mdata = trained
    z = model.get_latent_representation(mdata, modality="rna", indices=np.arange(12))
    condition = {"rna": torch.as_tensor(z)}
    diffusion.translation_spread[0, 1] = 2.5

    def draw(spread):
        generator = torch.Generator().manual_seed(4)
        return diffusion.sample("dpm++2m", condition=condition, n_steps=4,
                                generator=generator, spread=spread)["atac"]  # fmt: skip

    mean = diffusion.sample("mean", condition=condition)["atac"]
    learned, calibrated = draw("learned"), draw("calibrated")
    torch.testing.assert_close(calibrated - mean, 2.5 * (learned - mean))
    # the point estimate is not moved
    torch.testing.assert_close(
        diffusion.sample("mean", condition=condition, spread="calibrated")["atac"], mean
    )
    diffusion.translation_spread.fill_(1.0)  # factor 1: the learned samples themselves
    torch.testing.assert_close(draw("calibrated"), learned)


def test_translated_variance_grows_with_the_factor(trained, diffusion):
    model, mdata = trained
    options = {"sampler": "dpm++2m", "n_steps": 4, "seed": 1, "n_samples": 4,
               "indices": np.arange(20)}  # fmt: skip
    diffusion.translation_spread[0, 1] = 3.0
    learned = model.get_translated_modality(mdata, "rna", "atac", spread="learned", **options)
    wide = model.get_translated_modality(mdata, "rna", "atac", **options)
    assert wide.uns["scdx_translation"]["spread"] == "calibrated"
    assert wide.layers["variance"].mean() > 2 * learned.layers["variance"].mean()
    with pytest.raises(ValueError, match="spread"):
        model.get_translated_modality(mdata, "rna", "atac", spread="wide", **options)


def test_the_spread_is_saved_and_models_without_it_load_with_the_learned_spread(diffusion):
    state = diffusion.state_dict()
    assert "translation_spread" in state
    del state["translation_spread"]
    diffusion.load_state_dict(state)
    assert diffusion.translation_spread.eq(1.0).all()


def test_without_validation_cells_every_factor_is_one(trained, diffusion):
    assert fit_translation_spread(trained[0], []) == {}
    assert diffusion.translation_spread.eq(1.0).all()


def test_the_cells_read_are_bounded_by_decoded_values():
    assert n_fit_cells(2_000) == MAX_CELLS
    assert n_fit_cells(25_734) == MAX_CELLS  # the widest shared data set is read whole
    assert n_fit_cells(200_000) == MAX_SCORED_VALUES // 200_000 == 167
    assert n_fit_cells(10**8) == MIN_CELLS


def test_the_fit_reads_fewer_cells_when_features_are_many(trained, diffusion, monkeypatch):
    model, _ = trained
    widest = max(model.module.n_features.values())
    monkeypatch.setattr(spread, "MIN_CELLS", 1)
    monkeypatch.setattr(spread, "MAX_SCORED_VALUES", 5 * widest)
    read = []

    def counting(*args, **kwargs):
        for batch in validation_minibatches(*args, **kwargs):
            read.append(len(next(iter(batch[0].values()))))
            yield batch

    monkeypatch.setattr(spread, "validation_minibatches", counting)
    assert len(model.validation_indices) > 5
    fit_translation_spread(model, model.validation_indices)
    assert sum(read) == 5
