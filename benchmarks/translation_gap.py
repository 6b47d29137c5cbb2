"""Where a translation loses to the floor of its own source latent: the denoiser or the decoder.

``SCDX(mdata)`` is trained with ``model.train()`` on the training cells of the canonical split,
and each direction's held-out translation (the default conditional mean) is scored beside:

* the *floor*: kNN and ridge regression from the model's own source latent to the measured
  target (:func:`scdx_scvi.metrics.latent_floor`);
* the target decoder applied to a ridge regression (``alpha = 1``) from the source latent to the
  target *latent*, fitted on the training cells: a linear source pathway through the decoder;
* the decoded blend ``(1 - w) * mean + w * ridge`` of the denoiser's conditional mean latent and
  that ridge latent, for ``w`` of :data:`WEIGHTS`;
* the same linear map trained further through the frozen target decoder, on the target
  likelihood of the training cells' measured values (:func:`decoder_aware_map`): a linear
  pathway fitted in measured space, as the floor is, rather than in latent space;
* the target decoder applied to the cell's own target latent: its reconstruction, the most any
  translation through the decoder can reach.

If the decoded ridge latent also stays below the floor, the decoder path, not the denoiser,
bounds the translation; if the decoder-aware map reaches it, what is lost is the fit in latent
space. Every decoded value is the default expected ``log1p`` value per 10k counts
(accessibility probabilities for ATAC), scored by the benchmarks' headline metric.

Usage::

    python benchmarks/translation_gap.py --dataset eccite_citefuse
"""

from __future__ import annotations

import argparse

import numpy as np
import scvi
import torch
from _common import headline, kinds, open_results, read, split
from sklearn.linear_model import Ridge

from scdx_scvi import SCDX
from scdx_scvi.metrics import latent_floor, translation_directions

#: Weights of the ridge latent in the decoded blends.
WEIGHTS = (0.25, 0.5, 0.75)
#: Full-batch Adam steps (learning rate 1e-2) of :func:`decoder_aware_map`.
MAP_STEPS = 300


def decoder_aware_map(
    module, target: str, ridge: Ridge, source_latent: np.ndarray, values, steps: int = MAP_STEPS
) -> torch.nn.Linear:
    """Train the ridge map between latents on the decoded target's likelihood of ``values``.

    The map starts at the ridge solution; only its weights move (the decoder is frozen) over
    ``steps`` full-batch Adam steps on the mean negative log-likelihood of the training
    cells' raw target ``values`` under the target decoder's likelihood.
    """
    linear = torch.nn.Linear(source_latent.shape[1], ridge.coef_.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(ridge.coef_))
        linear.bias.copy_(torch.as_tensor(ridge.intercept_))
    likelihood = module.likelihoods[target]
    x = torch.as_tensor(values.toarray() if hasattr(values, "toarray") else values).float()
    observed, library, _ = likelihood.prepare(x)
    z = torch.as_tensor(source_latent)
    batch_index = module._decoder_batch(None, len(z))
    trainable = [p for p in module.parameters() if p.requires_grad]
    module.requires_grad_(False)
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        logits = module.decode_logits({target: linear(z)}, batch_index)[target]
        likelihood.nll(likelihood.distribution(logits, library), observed).mean().backward()
        optimizer.step()
    for p in trainable:
        p.requires_grad_(True)
    return linear.requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="eccite_citefuse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args()
    mdata = read(args.dataset)
    train, test = split(mdata)
    results = open_results(__file__, args, train, test)
    kind = kinds(mdata)
    name_of = {k: name for name, k in kind.items()}
    scvi.settings.seed = args.seed
    SCDX.setup_mudata(
        train,
        modalities={f"{kind[name]}_layer": name for name in mdata.mod},
        labels_key="cell_type" if "cell_type" in mdata.obs else None,
    )
    model = SCDX(train)
    budget = {"max_epochs": 2, "max_steps_diffusion": 20} if args.quick else {}
    model.train(enable_progress_bar=False, accelerator="cpu", **budget)
    module = model.module.eval()
    latent = {
        (cells, m): model.get_latent_representation(data, modality=m)
        for cells, data in (("train", train), ("test", test))
        for m in kind.values()
    }

    def decoded(target: str, z: np.ndarray | torch.Tensor) -> np.ndarray:
        z = torch.as_tensor(z, dtype=torch.float32)
        batch_index = module._decoder_batch(None, len(z))
        with torch.no_grad():
            values = module.decode_normalized({target: z}, batch_index, expected="log1p")
        return values[target].numpy()

    for source, target in translation_directions(kind.values()):
        truth = test[name_of[target]].X
        rows = {
            "translation": model.get_translated_modality(
                test[name_of[source]], source, target, seed=0
            ).X
        }
        rows |= latent_floor(
            latent["train", source], train[name_of[target]].X, latent["test", source], target
        )
        ridge = Ridge(alpha=1.0).fit(latent["train", source], latent["train", target])
        linear = torch.as_tensor(ridge.predict(latent["test", source]), dtype=torch.float32)
        with torch.no_grad():
            condition = {source: torch.as_tensor(latent["test", source])}
            sampler = module.diffusion.make_sampler("mean", None)
            mean = module.diffusion.sample(sampler, condition=condition)[target]
        # the decoded conditional mean is the translation: this script decodes as it does
        np.testing.assert_allclose(decoded(target, mean), rows["translation"], rtol=1e-4, atol=1e-6)
        rows["ridge target latent, decoded"] = decoded(target, linear)
        fitted = decoder_aware_map(
            module, target, ridge, latent["train", source], train[name_of[target]].X,
            steps=10 if args.quick else MAP_STEPS,
        )  # fmt: skip
        rows["decoder-aware linear map, decoded"] = decoded(
            target, fitted(torch.as_tensor(latent["test", source]))
        )
        for w in WEIGHTS:
            rows[f"blend w = {w}, decoded"] = decoded(target, (1 - w) * mean + w * linear)
        rows["own target latent, decoded"] = decoded(target, latent["test", target])
        for name, values in rows.items():
            results.record(
                {"direction": f"{source}->{target}", "row": name,
                 "score": headline(truth, values, target)}
            )  # fmt: skip


if __name__ == "__main__":
    main()
