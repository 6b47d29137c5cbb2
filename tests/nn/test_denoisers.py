from __future__ import annotations

import math

import pytest
import torch

from scdx_scvi.nn import (
    DCAUNet,
    DualCrossAttention,
    FeatureCrossAttention,
    flatten_attention,
    timestep_embedding,
)

DIMS = {
    2: {"rna": 7, "atac": 5},
    3: {"rna": 7, "atac": 5, "protein": 3},
}
C = 8
B = 4
VARIANTS = ["dca", "feature", "none"]


@pytest.fixture(autouse=True)
def single_thread():
    """Intra-op threads only add overhead for these tiny tensors (and thrash on busy machines)."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


def _model(n_mod: int = 2, seed: int = 0, **kwargs) -> DCAUNet:
    torch.manual_seed(seed)
    kwargs.setdefault("n_channels", C)
    kwargs.setdefault("attention_dim", 8)
    kwargs.setdefault("n_heads", 2)
    return DCAUNet(DIMS[n_mod], **kwargs)


def _inputs(model: DCAUNet, seed: int = 1, batch_size: int = B):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(batch_size, d, generator=g) for m, d in model.latent_dims.items()}
    t = torch.randint(0, 1000, (batch_size,), generator=g)
    return x, t


def _perturb_zero_init(model: torch.nn.Module) -> None:
    """Give every all-zero parameter (zero-initialised layers) small random values."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.1)


def _hand_dca(block: DualCrossAttention, h: dict[str, torch.Tensor]):
    """Section 3.2 written out with einsums on the raw projection vectors."""
    d = block.attention_dim
    out, maps = {}, {}
    for a in block.modalities:
        update = torch.zeros_like(h[a])
        maps[a] = {}
        for b, p in block.directions[a].items():
            q = torch.einsum("bi,d->bid", h[a], p.query.weight[:, 0])
            k = torch.einsum("bj,d->bjd", h[b], p.key.weight[:, 0])
            v = torch.einsum("bj,d->bjd", h[b], p.value.weight[:, 0])
            s = torch.softmax(torch.einsum("bid,bjd->bij", q, k) / math.sqrt(d), dim=-1)
            update = update + torch.einsum("bij,bjd,d->bi", s, v, p.out.weight[0])
            maps[a][b] = s
        out[a] = h[a] + update
    return out, maps


# ----------------------------------------------------------------------------- shapes / contract


@pytest.mark.parametrize("n_mod", [2, 3])
@pytest.mark.parametrize("cross_attention", VARIANTS)
@pytest.mark.parametrize("conditioning", ["none", "labels", "labels_null", "labels_batch"])
def test_output_shapes(n_mod, cross_attention, conditioning):
    n_labels = 0 if conditioning == "none" else 3
    n_batch = 2 if conditioning == "labels_batch" else 0
    model = _model(n_mod, cross_attention=cross_attention, n_labels=n_labels, n_batch=n_batch)
    x, t = _inputs(model)
    kwargs = {}
    if conditioning in ("labels", "labels_batch"):
        kwargs["labels"] = torch.tensor([0, 1, 2, 3])  # 3 = null label
    if conditioning == "labels_batch":
        kwargs["batch"] = torch.tensor([0, 1, 2, 0])  # 2 = null batch
    eps = model(x, dict.fromkeys(x, t), **kwargs)
    assert list(eps) == list(DIMS[n_mod])
    for m, d in DIMS[n_mod].items():
        assert eps[m].shape == (B, d)
        assert torch.isfinite(eps[m]).all()


def test_null_label_and_batch_are_the_default():
    model = _model(n_labels=3, n_batch=2)
    x, t = _inputs(model)
    default = model(x, t)
    explicit = model(x, t, labels=torch.full((B,), 3), batch=torch.full((B, 1), 2))
    torch.testing.assert_close(default, explicit, rtol=0, atol=0)
    other = model(x, t, labels=torch.zeros(B, dtype=torch.long))
    assert not torch.allclose(other["rna"], default["rna"])


@pytest.mark.parametrize("n_mod", [2, 3])
@pytest.mark.parametrize("cross_attention", VARIANTS)
def test_equal_per_modality_timesteps_match_a_shared_timestep(n_mod, cross_attention):
    model = _model(n_mod, cross_attention=cross_attention, n_labels=2)
    _perturb_zero_init(model)
    x, t = _inputs(model)
    labels = torch.tensor([0, 1, 0, 2])
    shared = model(x, t, labels=labels)
    per_mod = model(x, {m: t.clone().float() for m in x}, labels=labels)
    torch.testing.assert_close(per_mod, shared, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cross_attention", VARIANTS)
def test_different_timesteps_per_modality(cross_attention):
    model = _model(3, cross_attention=cross_attention)
    _perturb_zero_init(model)
    x, t = _inputs(model)
    t_map = dict.fromkeys(x, t)
    base = model(x, t_map)
    moved = model(x, {**t_map, "rna": (t + 100) % 1000})
    assert not torch.allclose(moved["rna"], base["rna"])
    # the streams interact only through cross-attention
    coupled = cross_attention != "none"
    for m in ("atac", "protein"):
        assert torch.allclose(moved[m], base[m]) != coupled
    # scalar timestep broadcasts over the batch
    torch.testing.assert_close(model(x, torch.tensor(7)), model(x, torch.full((B,), 7)))


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0, 5, 999])
    emb = timestep_embedding(t, 6)
    freqs = 10_000.0 ** (-torch.arange(3) / 3)
    expected = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=-1)
    torch.testing.assert_close(emb, expected)
    assert emb[0].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert timestep_embedding(t, 7).shape == (3, 7)


# ----------------------------------------------------------------------------- DCA algebra


@pytest.mark.parametrize("widths", [{"rna": 6, "atac": 6}, {"rna": 6, "atac": 4, "protein": 5}])
def test_dca_is_the_hand_written_formula(widths):
    torch.manual_seed(0)
    block = DualCrossAttention(list(widths))
    h = {m: torch.randn(3, n) for m, n in widths.items()}
    h_before = {m: v.clone() for m, v in h.items()}
    out, maps = block(h, return_attention=True)
    # the hand-written version uses only pre-update values for every direction
    want_out, want_maps = _hand_dca(block, h_before)
    torch.testing.assert_close(out, want_out)
    torch.testing.assert_close(maps, want_maps)
    torch.testing.assert_close(h, h_before, rtol=0, atol=0)
    # without maps: same values, and the same gradients for every projection and input
    torch.testing.assert_close(block(h), want_out)
    params = [*block.parameters(), *(x.requires_grad_() for x in h_before.values())]
    got = torch.autograd.grad(sum(v.square().sum() for v in block(h_before).values()), params)
    want = torch.autograd.grad(
        sum(v.square().sum() for v in _hand_dca(block, h_before)[0].values()), params
    )
    torch.testing.assert_close(got, want)


def test_dca_is_four_scalars():
    torch.manual_seed(0)
    block = DualCrossAttention(["rna", "atac"])
    assert sum(p.numel() for p in block.parameters()) == 512
    h = {"rna": torch.randn(2, 5), "atac": torch.randn(2, 5)}
    out, maps = block(h, return_attention=True)
    for a, b in (("rna", "atac"), ("atac", "rna")):
        p = block.directions[a][b]
        gamma = (p.query.weight[:, 0] @ p.key.weight[:, 0]) / 8
        beta = p.value.weight[:, 0] @ p.out.weight[0]
        s = torch.softmax(gamma * h[a][:, :, None] * h[b][:, None, :], dim=-1)
        torch.testing.assert_close(maps[a][b], s)
        torch.testing.assert_close(out[a], h[a] + beta * (s @ h[b][:, :, None]).squeeze(-1))


@pytest.mark.parametrize("kind", ["dca", "feature"])
@pytest.mark.parametrize("n_mod", [2, 3])
def test_attention_rows_sum_to_one(kind, n_mod):
    torch.manual_seed(0)
    widths = dict.fromkeys(DIMS[n_mod], 6)
    block = (
        DualCrossAttention(list(widths))
        if kind == "dca"
        else FeatureCrossAttention(widths, attention_dim=8, n_heads=2)
    )
    h = {m: torch.randn(3, 6) for m in widths}
    _, maps = block(h, return_attention=True)
    for a in widths:
        assert set(maps[a]) == set(widths) - {a}
        for s in maps[a].values():
            assert s.shape == (3, 6, 6)
            assert (s >= 0).all()
            torch.testing.assert_close(s.sum(-1), torch.ones(3, 6))


def test_feature_cross_attention_is_identity_at_init_then_matches_sdpa_path():
    torch.manual_seed(0)
    block = FeatureCrossAttention({"rna": 6, "atac": 4, "protein": 5}, attention_dim=8, n_heads=2)
    h = {"rna": torch.randn(3, 6), "atac": torch.randn(3, 4), "protein": torch.randn(3, 5)}
    torch.testing.assert_close(block(h), h, rtol=0, atol=0)
    _perturb_zero_init(block)
    fused = block(h)
    explicit, _ = block(h, return_attention=True)
    torch.testing.assert_close(fused, explicit)
    assert not torch.allclose(fused["rna"], h["rna"])


def test_zero_init_options():
    model = _model(zero_init_head=True, zero_init_residual=True, cross_attention="feature")
    x, t = _inputs(model)
    eps = model(x, t)
    assert all(not e.any() for e in eps.values())
    # a feature-attention U-Net at init computes what the same U-Net without attention does
    plain = _model(cross_attention="none")
    feature = _model(cross_attention="feature")
    plain.load_state_dict(feature.state_dict(), strict=False)
    torch.testing.assert_close(feature(x, t), plain(x, t), rtol=0, atol=0)


# ----------------------------------------------------------------------------- return_attention


@pytest.mark.parametrize("n_mod", [2, 3])
@pytest.mark.parametrize("cross_attention", VARIANTS)
def test_return_attention_structure(n_mod, cross_attention):
    model = _model(n_mod, cross_attention=cross_attention)
    x, t = _inputs(model)
    captured = {}
    hooks = [
        model.input_blocks[1].register_forward_hook(lambda *a: captured.setdefault(0, a[2])),
        model.input_blocks[2].register_forward_hook(lambda *a: captured.setdefault(1, a[2])),
        model.output_blocks[1].register_forward_hook(lambda *a: captured.setdefault(2, a[2])),
    ]
    eps, sites = model(x, t, return_attention=True)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(eps, model(x, t))
    assert [s["site"] for s in sites] == ["input_1", "middle", "output_1"]
    for i, (site, width) in enumerate(zip(sites, (2 * C, C, 2 * C), strict=True)):
        assert list(site["inputs"]) == list(DIMS[n_mod])
        for m, h_in in site["inputs"].items():
            assert h_in.shape == (B, width)
            assert torch.equal(h_in, captured[i][m])
        if cross_attention == "none":
            assert site["attention"] == {}
            continue
        for a in DIMS[n_mod]:
            for b in set(DIMS[n_mod]) - {a}:
                assert site["attention"][a][b].shape == (B, width, width)
    if n_mod == 2 and cross_attention != "none":
        flat = flatten_attention(sites)
        assert len(flat) == 12
        assert flat[4] is sites[1]["inputs"]["rna"]
        assert flat[6] is sites[1]["attention"]["rna"]["atac"]
        assert flat[7].shape == (B, C, C)


def test_attention_inputs_can_be_differentiated_to_the_latents():
    model = _model()
    x, t = _inputs(model)
    x = {m: v.requires_grad_() for m, v in x.items()}
    _, sites = model(x, t, return_attention=True)
    # DCA #1 is the first place where the streams meet
    sites[0]["inputs"]["rna"][:, 3].mean().backward(retain_graph=True)
    assert x["rna"].grad.any()
    assert x["atac"].grad is None
    sites[1]["inputs"]["rna"][:, 3].mean().backward()
    assert x["atac"].grad.any()


# ----------------------------------------------------------------------------- training behaviour


@pytest.mark.parametrize("n_mod", [2, 3])
@pytest.mark.parametrize("cross_attention", VARIANTS)
def test_gradients_reach_every_parameter(n_mod, cross_attention):
    improved = cross_attention == "feature"
    model = _model(
        n_mod,
        cross_attention=cross_attention,
        n_labels=3,
        n_batch=2,
        zero_init_head=improved,
        zero_init_residual=improved,
    )
    x, t = _inputs(model)
    labels, batch = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 1])
    t_map = {m: (t + 37 * i) % 1000 for i, m in enumerate(x)}

    def grads():
        model.zero_grad()
        eps = model(x, t_map, labels=labels, batch=batch)
        sum((e * torch.randn_like(e)).sum() for e in eps.values()).backward()
        return {n: p.grad for n, p in model.named_parameters()}

    g = grads()
    assert all(v is not None for v in g.values())
    zero = {n for n, v in g.items() if not v.any()}
    if improved:
        # documented: with zero-initialised heads only the heads' last layers learn at step 0
        assert zero == {n for n in g if not n.startswith("head.") or ".2." not in n}
        _perturb_zero_init(model)
        zero = {n for n, v in grads().items() if not v.any()}
    assert zero == set()


@pytest.mark.parametrize("cross_attention", ["dca", "feature"])
def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(cross_attention):
    model = _model(cross_attention=cross_attention)
    _perturb_zero_init(model)
    ckpt = _model(cross_attention=cross_attention, gradient_checkpointing=True)
    ckpt.load_state_dict(model.state_dict())
    x, t = _inputs(model)
    results = []
    for net in (model, ckpt):
        (eps, sites) = net(x, t, return_attention=True)
        sum(e.square().sum() for e in eps.values()).backward()
        results.append((eps, sites[1]["attention"], [p.grad for p in net.parameters()]))
    torch.testing.assert_close(results[0], results[1])


def test_deterministic_given_a_seed():
    x, t = _inputs(_model())
    a, b = _model(seed=3, cross_attention="feature"), _model(seed=3, cross_attention="feature")
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)
    torch.testing.assert_close(a(x, t), b(x, t), rtol=0, atol=0)
    torch.testing.assert_close(a(x, t), a(x, t), rtol=0, atol=0)
    assert not torch.equal(_model(seed=4).input_proj["rna"].weight, a.input_proj["rna"].weight)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cross_attention": "dca"},
        {"cross_attention": "feature", "zero_init_head": True, "zero_init_residual": True},
    ],
    ids=["faithful", "improved"],
)
def test_overfits_a_fixed_batch(kwargs):
    model = _model(n_labels=2, n_channels=16, **kwargs)
    x, t = _inputs(model, batch_size=8)
    labels = torch.arange(8) % 3
    g = torch.Generator().manual_seed(5)
    target = {m: torch.randn(v.shape, generator=g) for m, v in x.items()}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_fn():
        eps = model(x, t, labels=labels)
        return sum((eps[m] - target[m]).square().mean() for m in x)

    with torch.no_grad():
        start = loss_fn().item()
    for _ in range(50):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * start


# ----------------------------------------------------------------------------- parameter counts


def _reference_count(c: int, latent_dims: list[int], n_classes: int) -> int:
    """Analytic parameter count of the reference MultimodalUNet (method.md section 3.1)."""

    def linear(n_in, n_out):
        return n_in * n_out + n_out

    def res_block(n_in, n_out):
        skip = linear(n_in, n_out) if n_in != n_out else 0
        return 2 * n_in + linear(n_in, n_out) + 2 * n_out + linear(n_out, n_out) + skip

    blocks = [(4, 4), (4, 2), (2, 1), (1, 1), (2, 1), (3, 2), (6, 4)]
    count = 2 * linear(c, c) + n_classes * c + 3 * 512
    for n_in, n_out in blocks:
        count += linear(c, 2 * n_out * c) + len(latent_dims) * res_block(n_in * c, n_out * c)
    for w in latent_dims:
        count += linear(w, 4 * c) + 2 * 4 * c + linear(4 * c, w)
    return count


@pytest.mark.parametrize(
    ("c", "dims", "n_classes", "published"),
    [
        (128, {"rna": 100, "atac": 100}, 22, 5.49),  # openproblem
        (160, {"rna": 150, "atac": 200}, 0, 8.69),  # BABEL
        (96, {"rna": 64, "atac": 64}, 33, 3.08),  # perturbation script
    ],
)
def test_parameter_count_matches_the_reference(c, dims, n_classes, published):
    with torch.device("meta"):
        model = DCAUNet(dims, n_labels=n_classes, n_channels=c)
        with_batch = DCAUNet(dims, n_labels=n_classes, n_batch=4, n_channels=c)
    n_params = sum(p.numel() for p in model.parameters())
    null_row = c if n_classes else 0
    reference = _reference_count(c, list(dims.values()), n_classes)
    assert n_params == reference + null_row
    assert round(reference / 1e6, 2) == published
    assert sum(p.numel() for p in with_batch.parameters()) == n_params + 5 * c


# ----------------------------------------------------------------------------- errors


def test_invalid_arguments():
    with pytest.raises(ValueError, match="cross_attention"):
        DCAUNet(DIMS[2], cross_attention="windowed")
    with pytest.raises(ValueError, match="two modalities"):
        DCAUNet({"rna": 4})
    with pytest.raises(ValueError, match="divisible"):
        FeatureCrossAttention({"rna": 4, "atac": 4}, attention_dim=10, n_heads=4)
    model = _model()
    x, t = _inputs(model)
    with pytest.raises(ValueError, match="n_labels=0"):
        model(x, t, labels=torch.zeros(B, dtype=torch.long))
    with pytest.raises(KeyError, match="atac"):
        model({"rna": x["rna"]}, t)


@pytest.mark.parametrize("n_mod", [2, 3])
def test_source_injection_starts_as_the_plain_network(n_mod):
    plain = _model(n_mod, n_labels=3)
    injected = _model(n_mod, n_labels=3, source_injection=True)
    missing, unexpected = injected.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("source_") for k in missing)
    x, t = _inputs(plain)
    labels = torch.tensor([0, 1, 2, 3])
    expected, got = plain(x, t, labels), injected(x, t, labels)
    for m in plain.modalities:
        torch.testing.assert_close(got[m], expected[m])


def test_source_injection_lets_a_clean_source_steer_the_target():
    """The target stream's output depends on the source latent without any cross-attention."""
    model = _model(2, cross_attention="none", source_injection=True)
    _perturb_zero_init(model)
    x, _ = _inputs(model)
    t = {"rna": torch.full((B,), 500), "atac": torch.zeros(B, dtype=torch.long)}
    base = model(x, t)["rna"]
    shifted = model({**x, "atac": x["atac"] + 1.0}, t)["rna"]
    assert not torch.allclose(base, shifted)
    # without the injection the streams are independent
    plain = _model(2, cross_attention="none")
    assert torch.allclose(plain(x, t)["rna"], plain({**x, "atac": x["atac"] + 1.0}, t)["rna"])
