from __future__ import annotations

import pytest
import torch

from scdx_scvi.module import BernoulliLikelihood, LatentDepth, TrainingDepths


def _depths(n: int = 4000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g)
    beta = torch.tensor([0.5, -0.3, 0.0])
    log_depth = 6.0 + z @ beta + 0.2 * torch.randn(n, generator=g)
    return z, log_depth.exp(), beta


def test_latent_depth_recovers_the_linear_log_normal():
    z, depth, beta = _depths()
    model = LatentDepth({"rna": 3, "atac": 3})
    assert not model.fitted("rna")
    model.fit("rna", z, depth)
    assert model.fitted("rna") and not model.fitted("atac")
    torch.testing.assert_close(model.coef_rna[:3].float(), beta, atol=0.02, rtol=0)
    assert float(model.coef_rna[3]) == pytest.approx(6.0, abs=0.02)
    assert float(model.sd_rna) == pytest.approx(0.2, abs=0.01)
    torch.manual_seed(0)
    drawn = model.sample("rna", z)
    assert drawn.shape == (len(z), 1)
    residual = drawn.log().squeeze(-1) - (6.0 + z @ beta)
    assert float(residual.std()) == pytest.approx(0.2, abs=0.01)


def test_latent_depth_draws_stay_within_the_training_depths():
    z, depth, _ = _depths()
    model = LatentDepth({"atac": 3})
    model.fit("atac", z, depth)
    far = torch.tensor([[40.0, -40.0, 0.0], [-40.0, 40.0, 0.0]])  # log mean 6 +- 32
    drawn = model.sample("atac", far.repeat(50, 1)).squeeze(-1)
    low, high = float(depth.min()), float(depth.max())
    assert drawn.min() == pytest.approx(low, rel=1e-5)
    assert drawn.max() == pytest.approx(high, rel=1e-5)


def test_latent_depth_with_few_cells_keeps_the_intercept_only():
    z, depth, _ = _depths(n=6)
    model = LatentDepth({"rna": 3})
    model.fit("rna", z, depth)
    assert torch.all(model.coef_rna[:3] == 0)
    assert float(model.coef_rna[3]) == pytest.approx(float(depth.log().mean()), rel=1e-6)
    with pytest.raises(ValueError, match="No training cell has 'rna'"):
        model.fit("rna", z[:0], depth[:0])


def test_latent_depth_loads_a_state_saved_before_it_existed():
    model = LatentDepth({"rna": 3})
    model.fit("rna", *_depths()[:2])
    outer = torch.nn.Module()
    outer.depth = model
    state = {k: v for k, v in outer.state_dict().items() if not k.startswith("depth.")}
    fresh = torch.nn.Module()
    fresh.depth = LatentDepth({"rna": 3})
    fresh.load_state_dict(state)  # strict: the missing buffers are filled, unfitted
    assert not fresh.depth.fitted("rna")
    fresh.load_state_dict(outer.state_dict())
    assert fresh.depth.fitted("rna")
    # fitted before the range was kept: draws as fitted, without bounds
    state = {k: v for k, v in outer.state_dict().items() if k != "depth.range_rna"}
    fresh.load_state_dict(state)
    assert fresh.depth.fitted("rna") and torch.isnan(fresh.depth.range_rna).all()
    far = torch.tensor([[40.0, -40.0, 0.0]])
    assert float(fresh.depth.sample("rna", far).log()) > float(model.range_rna[1]) + 10


def test_training_depths_take_one_training_cell_of_the_label_for_every_modality():
    nan = float("nan")
    model = TrainingDepths(["rna", "protein"])
    assert not model.fitted()
    labels = torch.tensor([0, 0, 1, 1, 1])
    rna = torch.tensor([100.0, 200.0, 300.0, 400.0, 500.0])
    protein = torch.tensor([10.0, 20.0, 30.0, nan, 50.0])  # cell 3 lacks protein
    model.fit(labels, {"rna": rna, "protein": protein})
    assert model.fitted()
    torch.manual_seed(0)
    drawn = model.sample(torch.tensor([0] * 200 + [1] * 200 + [2] * 200))  # no cell has label 2
    pairs = torch.cat([drawn["rna"], drawn["protein"]], -1)
    assert pairs.shape == (600, 2)
    pairs_of = {tuple(p) for p in pairs.tolist()}
    assert {tuple(p) for p in pairs[:200].tolist()} == {(100.0, 10.0), (200.0, 20.0)}
    assert {tuple(p) for p in pairs[200:400].tolist()} == {(300.0, 30.0), (500.0, 50.0)}
    assert {tuple(p) for p in pairs[400:].tolist()} == {(100.0, 10.0), (200.0, 20.0),
                                                        (300.0, 30.0), (500.0, 50.0)}  # fmt: skip
    assert pairs_of <= {(100.0, 10.0), (200.0, 20.0), (300.0, 30.0), (500.0, 50.0)}
    # a label none of whose cells has every modality draws each modality on its own
    model.fit(torch.tensor([0, 0]), {"rna": torch.tensor([1.0, nan]),
                                     "protein": torch.tensor([nan, 2.0])})  # fmt: skip
    drawn = model.sample(torch.zeros(5, dtype=torch.long))
    assert drawn["rna"].eq(1.0).all() and drawn["protein"].eq(2.0).all()


def test_training_depths_load_with_their_saved_size_and_stay_empty_in_older_states():
    model = TrainingDepths(["rna"])
    model.fit(torch.tensor([0, 1, 1]), {"rna": torch.tensor([5.0, 6.0, 7.0])})
    fresh = TrainingDepths(["rna"])
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.libraries, model.libraries)
    assert fresh.labels.tolist() == [0, 1, 1]
    older = TrainingDepths(["rna"])
    older.load_state_dict({})  # saved before the buffers existed: strict, left unfitted
    assert not older.fitted()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_at_depth_opens_the_requested_number_of_peaks(dtype):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(300, 5000, generator=g) * 2 - 6).to(dtype)
    depth = torch.linspace(5, 2000, 300).unsqueeze(-1)
    shifted = BernoulliLikelihood.at_depth(logits, depth, block=64)
    assert shifted.dtype == dtype
    torch.testing.assert_close(
        torch.sigmoid(shifted).sum(-1, dtype=torch.float64), depth.squeeze(-1).double(),
        atol=0.05, rtol=0,
    )  # fmt: skip
    # one offset per cell: the ranking of the peaks within a cell is kept
    torch.testing.assert_close(
        shifted - logits, (shifted - logits)[:, :1].expand_as(logits), atol=1e-4, rtol=0
    )


def test_bernoulli_at_depth_in_place_gives_the_same_logits():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(100, 800, generator=g) * 2 - 5
    depth = torch.linspace(3, 300, 100).unsqueeze(-1)
    shifted = BernoulliLikelihood.at_depth(logits, depth, block=32)
    in_place = logits.clone()
    assert BernoulliLikelihood.at_depth(in_place, depth, block=32, out=in_place) is in_place
    torch.testing.assert_close(in_place, shifted, atol=0, rtol=0)


def test_at_depth_default_block_bounds_its_buffer(monkeypatch):
    from scdx_scvi.module import _likelihoods

    monkeypatch.setattr(_likelihoods, "DEPTH_BLOCK_VALUES", 600)  # 3 rows of 200 peaks
    logits = torch.randn(10, 200) - 2.0
    depth = torch.linspace(5.0, 60.0, 10).reshape(-1, 1)
    shapes = []
    empty_like = torch.empty_like
    monkeypatch.setattr(
        torch, "empty_like", lambda x, **k: shapes.append(x.shape) or empty_like(x, **k)
    )
    shifted = BernoulliLikelihood.at_depth(logits, depth)
    assert (3, 200) in shapes and max(
        s[0] for s in shapes if s[-1] == 200 and s != logits.shape
    ) == 3
    torch.testing.assert_close(
        torch.sigmoid(shifted).sum(-1, keepdim=True), depth, atol=0.1, rtol=0.0
    )
