from __future__ import annotations

import numpy as np
import pytest
import torch
from scvi import REGISTRY_KEYS

from scdx_scvi.data._sparse import torch_csr
from scdx_scvi.module import SCDXModule
from scdx_scvi.module._scdx_module import _SplitRows


def _module(**kwargs) -> SCDXModule:
    return SCDXModule(
        n_features={"rna": 5, "atac": 4},
        n_hidden={"rna": (8,), "atac": (6,)},
        n_latent={"rna": 3, "atac": 2},
        **kwargs,
    ).eval()


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        REGISTRY_KEYS.X_KEY: torch.poisson(torch.full((6, 5), 3.0), generator=g),
        REGISTRY_KEYS.ATAC_X_KEY: torch.tensor([[0, 2, 1, 0]] * 3 + [[1, 0, 0, 3]] * 3).float(),
        REGISTRY_KEYS.BATCH_KEY: torch.zeros(6, 1, dtype=torch.long),
    }


def _nb_log_prob(x, mu, theta):
    return (
        torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
        + theta * torch.log(theta / (theta + mu)) + x * torch.log(mu / (theta + mu))
    )  # fmt: skip


@pytest.mark.parametrize("weights", ["sum", "per_feature", {"rna": 0.3, "atac": 2.0}])
def test_loss_is_the_weighted_sum_of_hand_computed_likelihoods(weights):
    module = _module(reconstruction_weights=weights)
    tensors = _tensors()
    with torch.no_grad():
        inference, generative, losses = module(tensors)
        x_rna, x_atac = tensors[REGISTRY_KEYS.X_KEY], tensors[REGISTRY_KEYS.ATAC_X_KEY]
        library = x_rna.sum(1, keepdim=True)
        z_rna = module.encoders["rna"](x_rna)  # raw counts in, as the reference
        z_atac = module.encoders["atac"]((x_atac > 0).float())  # binarised accessibility
        torch.testing.assert_close(inference["z"]["rna"], z_rna)
        mu = torch.softmax(module.decoders["rna"](z_rna), -1) * library
        theta = module.likelihoods["rna"].log_theta.exp()
        nll_rna = -_nb_log_prob(x_rna, mu, theta).sum(-1)
        logits = module.decoders["atac"](z_atac)
        target = (x_atac > 0).float()
        nll_atac = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, target, reduction="none"
        ).sum(-1)

    w = {"sum": {"rna": 1.0, "atac": 1.0}, "per_feature": {"rna": 1 / 5, "atac": 1 / 4}}.get(
        weights if isinstance(weights, str) else "", weights
    )
    expected = (w["rna"] * nll_rna + w["atac"] * nll_atac).mean()
    torch.testing.assert_close(losses.loss, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(losses.extra_metrics["reconstruction_loss_rna"], nll_rna.mean())
    torch.testing.assert_close(losses.extra_metrics["reconstruction_loss_atac"], nll_atac.mean())
    assert set(losses.reconstruction_loss) == {
        "reconstruction_loss_rna",
        "reconstruction_loss_atac",
    }


def test_log1p_encoder_input():
    module = _module(encoder_input="log1p")
    x = _tensors()[REGISTRY_KEYS.X_KEY]
    library = x.sum(1, keepdim=True)
    expected = torch.log1p(x / library * 1e4)
    torch.testing.assert_close(module.likelihoods["rna"].encode_input(x, library), expected)
    with torch.no_grad():
        z = module.inference({"rna": x})["z"]["rna"]
        torch.testing.assert_close(z, module.encoders["rna"](expected))


def test_batch_is_injected_only_when_asked():
    tensors = _tensors()
    tensors[REGISTRY_KEYS.BATCH_KEY][3:] = 1
    plain = _module(n_batch=2, use_batch=False)
    assert plain.encoders["rna"].hidden[0].n_cat_list == []
    conditioned = _module(n_batch=2, use_batch=True)
    assert conditioned.encoders["rna"].hidden[0].n_cat_list == [2]
    with torch.no_grad():
        z_as_given = conditioned(tensors, compute_loss=False)[0]["z"]["rna"]
        tensors[REGISTRY_KEYS.BATCH_KEY][:] = 0
        z_as_batch_0 = conditioned(tensors, compute_loss=False)[0]["z"]["rna"]
    torch.testing.assert_close(z_as_given[:3], z_as_batch_0[:3])
    assert not torch.allclose(z_as_given[3:], z_as_batch_0[3:])


def test_sample_draws_counts_and_binary_values():
    module = _module()
    draws = module.sample(_tensors(), n_samples=3)
    assert draws["rna"].shape == (3, 6, 5)
    assert torch.equal(draws["rna"], draws["rna"].round())
    assert set(draws["atac"].unique().tolist()) <= {0.0, 1.0}
    assert module.sample(_tensors())["atac"].shape == (6, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reconstruction_weights": "mean"}, "must be 'sum', 'per_feature' or a mapping"),
        ({"reconstruction_weights": {"rna": 1.0}}, r"missing \['atac'\]"),
        ({"reconstruction_weights": {"rna": 1.0, "atac": -1.0}}, "non-negative"),
        ({"encoder_input": "scaled"}, "encoder_input must be"),
        ({"norm": "groupnorm"}, "norm must be"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _module(**kwargs)


def test_needs_two_known_modalities():
    with pytest.raises(ValueError, match="at least two"):
        SCDXModule({"rna": 3}, {"rna": (4,)}, {"rna": 2})
    with pytest.raises(ValueError, match="Unknown modalities"):
        SCDXModule({"rna": 3, "hic": 3}, {"rna": (4,), "hic": (4,)}, {"rna": 2, "hic": 2})


def _paired_module(**kwargs) -> SCDXModule:
    return SCDXModule(
        n_features={"rna": 5, "atac": 4},
        n_hidden={"rna": (8,), "atac": (6,)},
        n_latent={"rna": 3, "atac": 3},
        **kwargs,
    ).eval()


def test_cross_reconstruction_decodes_each_modality_from_the_other_latent():
    module = _paired_module(cross_reconstruction=0.5)
    tensors = _tensors()
    with torch.no_grad():
        inference, _, losses = module(tensors)
        plain = _paired_module()
        plain.load_state_dict(module.state_dict())
        _, _, plain_losses = plain(tensors)
        z = inference["z"]
        x_rna, x_atac = tensors[REGISTRY_KEYS.X_KEY], tensors[REGISTRY_KEYS.ATAC_X_KEY]
        mu = torch.softmax(module.decoders["rna"](z["atac"]), -1) * x_rna.sum(1, keepdim=True)
        theta = module.likelihoods["rna"].log_theta.exp()
        cross_rna = -_nb_log_prob(x_rna, mu, theta).sum(-1)
        logits = module.decoders["atac"](z["rna"])
        cross_atac = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, (x_atac > 0).float(), reduction="none"
        ).sum(-1)
    expected = plain_losses.loss + 0.5 * (cross_rna + cross_atac).mean()
    torch.testing.assert_close(losses.loss, expected)
    torch.testing.assert_close(
        losses.extra_metrics["cross_reconstruction_loss"], (cross_rna + cross_atac).mean()
    )


def test_cross_decoding_in_training_matches_separate_decoder_calls():
    """One output product per target, hidden layers (batch norm) per source, mosaic rows."""
    module = _paired_module(cross_reconstruction=1.0).train()
    plain = _paired_module().train()  # own terms only, each decoder called once
    plain.load_state_dict(module.state_dict())
    tensors = _tensors()
    tensors[REGISTRY_KEYS.ATAC_X_KEY][0] = 0.0  # the first cell lacks ATAC
    _, _, losses = module(tensors)
    losses.loss.backward()

    inference, _, plain_losses = plain(tensors)
    z, library = inference["z"], inference["library"]
    both = inference["observed"]["rna"] & inference["observed"]["atac"]
    x_rna, x_atac = tensors[REGISTRY_KEYS.X_KEY][both], tensors[REGISTRY_KEYS.ATAC_X_KEY][both]
    mu = torch.softmax(plain.decoders["rna"](z["atac"][both]), -1) * library["rna"][both]
    theta = plain.likelihoods["rna"].log_theta.exp()
    cross = -_nb_log_prob(x_rna, mu, theta).sum(-1)
    cross = cross + torch.nn.functional.binary_cross_entropy_with_logits(
        plain.decoders["atac"](z["rna"][both]), (x_atac > 0).float(), reduction="none"
    ).sum(-1)
    expected = plain_losses.loss + cross.sum() / len(both)
    expected.backward()
    torch.testing.assert_close(losses.loss, expected)
    for (name, p), q in zip(module.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    for a, b in zip(module.buffers(), plain.buffers(), strict=True):  # batch-norm statistics
        torch.testing.assert_close(a, b, equal_nan=True)


def test_latent_agreement_is_scale_free_and_skips_unpaired_cells():
    module = _paired_module(latent_agreement=1.0)
    z = {"rna": torch.randn(6, 3), "atac": torch.randn(6, 3)}
    observed = {"rna": torch.ones(6, dtype=torch.bool), "atac": torch.ones(6, dtype=torch.bool)}
    observed["atac"][0] = False
    outputs = {"z": z, "library": {"rna": torch.ones(6, 1)}, "observed": observed}
    _, agreement = module._cross_modal_terms(outputs, {}, {})
    scaled = {"z": {m: 10.0 * v for m, v in z.items()}, "library": outputs["library"],
              "observed": observed}  # fmt: skip
    _, agreement_scaled = module._cross_modal_terms(scaled, {}, {})
    assert agreement[0] == 0 and (agreement[1:] > 0).all()
    torch.testing.assert_close(agreement, agreement_scaled)


def test_cross_modal_terms_need_equal_latents_and_non_negative_weights():
    with pytest.raises(ValueError, match="one latent size"):
        _module(cross_reconstruction=1.0)
    with pytest.raises(ValueError, match="latent_agreement"):
        _paired_module(latent_agreement=-1.0)


def test_sparse_atac_input_encodes_as_the_dense_one():
    module = _module()
    tensors = _tensors()
    atac = tensors[REGISTRY_KEYS.ATAC_X_KEY]
    atac[4] = 0  # a cell without accessibility: its rows are selected, the input made dense
    rna = tensors[REGISTRY_KEYS.X_KEY]
    dense = module.inference({"rna": rna, "atac": atac})
    sparse = module.inference({"rna": rna, "atac": torch_csr(atac.numpy(), "cpu")})
    for key in ("z", "library", "observed", "target"):
        for m in ("rna", "atac"):
            value = sparse[key][m]
            value = value.to_dense() if value.layout == torch.sparse_csr else value
            torch.testing.assert_close(value, dense[key][m])
    atac[4] = 1
    everyone = module.inference({"atac": torch_csr(atac.numpy(), "cpu")})["z"]["atac"]
    torch.testing.assert_close(everyone, module.inference({"atac": atac})["z"]["atac"])


def test_bernoulli_nll_is_minus_the_log_probability_with_its_gradient():
    module = _module()
    logits = (torch.randn(6, 4, dtype=torch.float64) * 30).requires_grad_()  # beyond softplus' 20
    target = (torch.rand(6, 4) > 0.5).double()
    likelihood = module.likelihoods["atac"]
    weights = torch.rand(6, dtype=torch.float64)
    nll = likelihood.nll(likelihood.distribution(logits), target)
    (grad,) = torch.autograd.grad((nll * weights).sum(), logits)
    px = likelihood.distribution(logits)
    expected = -px.log_prob(target).sum(-1)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), logits)
    torch.testing.assert_close(nll, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_bernoulli_nll_overwriting_its_logits_has_the_same_gradient_once():
    likelihood = _module().likelihoods["atac"]
    raw = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(6, 4) > 0.5).double()
    weights = torch.rand(6, dtype=torch.float64)
    grads = []
    for overwrite in (False, True):
        logits = raw * 2.0  # an intermediate, as the decoder's output in training
        nll = likelihood.nll(likelihood.distribution(logits), target, overwrite_logits=overwrite)
        loss = (nll * weights).sum()
        grads.append(torch.autograd.grad(loss, raw, retain_graph=True)[0])
    torch.testing.assert_close(grads[1], grads[0])
    with pytest.raises(RuntimeError, match="overwritten"):
        torch.autograd.grad(loss, raw)


def test_split_rows_passes_gradients_of_one_block_through_without_a_copy():
    x = torch.randn(6, 4, requires_grad=True)
    block = torch.randn(6, 4)
    torch.autograd.backward(_SplitRows.apply(x, [2, 4]), grad_tensors=block.split([2, 4]))
    assert x.grad.data_ptr() == block.data_ptr()
    torch.testing.assert_close(x.grad, block)
    x.grad = None
    apart = [torch.randn(2, 4), torch.randn(4, 4)]  # separate tensors: concatenated
    torch.autograd.backward(_SplitRows.apply(x, [2, 4]), grad_tensors=apart)
    torch.testing.assert_close(x.grad, torch.cat(apart))


def test_bernoulli_nll_scores_half_precision_logits_in_float32():
    likelihood = _module().likelihoods["atac"]
    half = torch.randn(5, 300).bfloat16().requires_grad_()
    target = (torch.rand(5, 300) > 0.7).float()
    nll = likelihood.nll(likelihood.distribution(half), target)
    assert nll.dtype == torch.float32
    expected = likelihood.nll(likelihood.distribution(half.detach().float()), target)
    torch.testing.assert_close(nll, expected)
    nll.sum().backward()
    assert half.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("theta", [0.05, 0.5, 2.0, 20.0])
def test_expected_log1p_is_the_negative_binomial_expectation(theta, monkeypatch):
    from scipy import stats

    from scdx_scvi.module import CountLikelihood, _likelihoods

    means = torch.tensor([[0.01, 0.5, 3.0, 20.0, 150.0]], dtype=torch.float64)
    likelihood = CountLikelihood(5)
    likelihood.log_theta.data.fill_(float(np.log(theta)))
    library, library_size = float(means.sum()), 1e4
    logits = torch.log(means).float()  # softmax(logits) * library = means
    with torch.no_grad():
        value = likelihood.expected_log1p(logits, torch.tensor(library), library_size)
    k = np.arange(200_000)
    for j, mu in enumerate(means[0].tolist()):
        pmf = stats.nbinom.pmf(k, theta, theta / (theta + mu))
        exact = float((pmf * np.log1p(k * library_size / library)).sum())
        assert abs(float(value[0, j]) - exact) < (0.25 if theta < 0.5 else 0.12), (mu, exact)
        assert float(value[0, j]) <= np.log1p(mu * library_size / library) + 1e-5  # Jensen
    # several cells, their own libraries, and blocks of rows give the same values
    rows = logits.expand(7, 5)
    libraries = torch.linspace(100.0, 2000.0, 7).reshape(-1, 1)
    with torch.no_grad():
        whole = likelihood.expected_log1p(rows, libraries, library_size)
        monkeypatch.setattr(_likelihoods, "LOG1P_BLOCK", 10)
        assert torch.allclose(likelihood.expected_log1p(rows, libraries, library_size), whole)
    # deeper cells lose less to sampling: values rise towards log1p of the expected value
    assert (whole.diff(dim=0) > 0).all()
    assert (whole <= torch.log1p(torch.softmax(logits, -1) * library_size) + 1e-5).all()


def test_decode_normalized_gives_the_decoders_probabilities_and_expected_counts():
    module = _module()
    z = {"rna": torch.randn(4, 3), "atac": torch.randn(4, 2)}
    with torch.no_grad():
        logits = module.decode_logits(z)
    values = module.decode_normalized(z, expected="counts")  # made in place of the logits
    torch.testing.assert_close(values["atac"], torch.sigmoid(logits["atac"]))
    torch.testing.assert_close(values["rna"], torch.softmax(logits["rna"], -1) * 1e4)


@pytest.mark.parametrize("expected", ["counts", "log1p"])
def test_decode_normalized_writes_into_the_given_blocks(expected):
    module = SCDXModule(
        n_features={"rna": 6, "atac": 5, "protein": 4},
        n_hidden={"rna": (8,), "atac": (8,), "protein": (8,)},
        n_latent={"rna": 3, "atac": 2, "protein": 3},
        protein_likelihood="nb_mixture",
    ).eval()
    z = {"rna": torch.randn(4, 3), "atac": torch.randn(4, 2), "protein": torch.randn(4, 3)}
    with torch.no_grad():
        fresh = module.decode_normalized(z, expected=expected)
        # rows of a larger block, as translation writes its chunks into its output
        blocks = {m: torch.full((6, v.shape[1]), -1.0) for m, v in fresh.items()}
        out = {m: block[1:5] for m, block in blocks.items()}
        values = module.decode_normalized(z, expected=expected, out=out)
    for m, v in fresh.items():
        assert values[m].data_ptr() == out[m].data_ptr(), m
        torch.testing.assert_close(out[m], v)
        assert (blocks[m][[0, 5]] == -1.0).all(), m  # rows outside are untouched


@pytest.mark.parametrize("binary", [False, True])
def test_normalized_in_place_equals_the_fresh_result(binary):
    from scdx_scvi.module._likelihoods import BernoulliLikelihood, CountLikelihood

    likelihood = BernoulliLikelihood() if binary else CountLikelihood(5)
    logits = torch.randn(4, 5) * 3
    fresh = likelihood.normalized(logits, 1e4)
    scratch = logits.clone()
    assert likelihood.normalized(scratch, 1e4, overwrite=True) is scratch
    torch.testing.assert_close(scratch, fresh)
