"""How much a trained SCDX denoiser uses the source modality when it predicts the target.

For held-out cells of the canonical split, the target latent (scaled to unit variance) is
noised to step ``t`` and the EMA denoiser predicts the clean latent
``x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` with the cell's own source latent at
``t = 0`` (the learned translation's input) and with the source of another, random cell. With
labels withheld (the null label, as for translation queries), the gap between the two errors is
what the source contributes. A ridge regression between the standardised latents of the
training cells gives the error a linear use of the source reaches. Near ``t = T`` the predicted
``x0`` is the conditional mean that translation starts from.

Usage::

    python benchmarks/condition_use.py --dataset snareseq_mop --model models/snareseq_mop_learned
"""

from __future__ import annotations

import argparse
import warnings

import torch
from _common import open_results, read, split
from sklearn.linear_model import Ridge

from scdx_scvi import SCDX


def standardised_latents(model: SCDX, cells, modalities: list[str]) -> dict[str, torch.Tensor]:
    """Latents of ``cells`` per modality, scaled as the diffusion does, with unit variance.

    The ``per_dim`` scaling already standardises each dimension; the reference's ``scalar``
    scaling gives an average standard deviation of 0.1 and is multiplied by 10 here.
    """
    z = {m: torch.as_tensor(model.get_latent_representation(cells, modality=m)) for m in modalities}
    diffusion = model.module.diffusion
    x = diffusion.scale(z)
    if diffusion.latent_scaling == "scalar":  # bring the scalar scaling to unit variance
        x = {m: v * 10.0 for m, v in x.items()}
    return x


def x0_error(model: SCDX, x: dict, source: str, target: str, t: int, shuffle: bool) -> float:
    """Mean squared error of the predicted clean target latent at step ``t``."""
    diffusion = model.module.diffusion
    n = x[target].shape[0]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(x[target].shape, generator=generator)
    scale = 10.0 if diffusion.latent_scaling == "scalar" else 1.0
    clean = {m: v / scale for m, v in x.items()}
    cond = clean[source][torch.randperm(n, generator=generator)] if shuffle else clean[source]
    steps = torch.full((n,), t)
    x_t = diffusion.schedule.q_sample(clean[target], steps, noise)
    with torch.no_grad():
        eps = diffusion.labelled_denoiser()(
            {source: cond, target: x_t}, {source: 0 * steps, target: steps}, None
        )[target]
    ab = diffusion.schedule.alpha_bar(steps).float().unsqueeze(-1)
    x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    return float(((x0 * scale - x[target]) ** 2).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_mop")
    parser.add_argument("--model", required=True, help="saved SCDX with a trained diffusion")
    parser.add_argument("--timesteps", default="500,900,999")
    parser.add_argument(
        "--epsilon-model",
        action="store_true",
        help="the model was saved before the `prediction` option (its denoiser predicts noise)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    mdata = read(args.dataset)
    train, test = split(mdata)
    model = SCDX.load(args.model, adata=train.copy())
    if args.epsilon_model:
        model.module.diffusion.prediction = "epsilon"
    modalities = list(model.modalities)
    results = open_results("condition_use.py", args, train, test)
    x_train = standardised_latents(model, train, modalities)
    x_test = standardised_latents(model, test, modalities)
    for source in modalities:
        for target in (m for m in modalities if m != source):
            ridge = Ridge(alpha=1.0).fit(x_train[source].numpy(), x_train[target].numpy())
            linear = ((ridge.predict(x_test[source].numpy()) - x_test[target].numpy()) ** 2).mean()
            for t in map(int, args.timesteps.split(",")):
                results.record(
                    {
                        "direction": f"{source}->{target}",
                        "t": t,
                        "x0_mse_own_source": x0_error(model, x_test, source, target, t, False),
                        "x0_mse_shuffled_source": x0_error(model, x_test, source, target, t, True),
                        "x0_mse_ridge_from_source": float(linear),
                        "target_variance": float(x_test[target].var(0).mean()),
                    }
                )


if __name__ == "__main__":
    main()
