# %% [markdown]
# # Translating RNA into ATAC and ATAC into RNA
#
# `model.get_translated_modality` predicts a modality that was not measured from one that
# was: the source is encoded by its autoencoder, the diffusion predicts the target latent given
# the source latent, and the target decoder turns it into expression or accessibility. This
# tutorial trains SCDX on simulated paired RNA + ATAC cells, then translates held-out cells
# given as an **RNA-only** AnnData into ATAC, and as an **ATAC-only** AnnData into RNA, and
# scores both against what was measured in those cells.
#
# It runs in a few minutes on a laptop CPU; `SCDX_TUTORIAL_QUICK=1` shrinks it to a smoke test.

# %%
import logging
import os
import warnings

import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import scvi

from scdx_scvi import SCDX
from scdx_scvi.datasets import simulate_multiome
from scdx_scvi.metrics import (
    auroc_per_feature,
    held_out_mask,
    latent_floor,
    log_cp10k,
    pearson_per_feature,
    translation_controls,
    translation_directions,
    translation_score_set,
)

QUICK = os.environ.get("SCDX_TUTORIAL_QUICK") == "1"
N_CELLS, N_GENES, N_PEAKS = (300, 100, 300) if QUICK else (2000, 500, 2000)
# the package defaults (SCDX(mdata) and model.train()); a tiny budget for the smoke test
BUDGET = {"max_epochs": 2, "max_steps_diffusion": 10} if QUICK else {}

# quieter output: mudata's upcoming default, no Lightning messages or warnings
md.set_options(pull_on_update=False)
for name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", module="lightning")
scvi.settings.seed = 0

# %% [markdown]
# ## Data and training
#
# Paired cells from the simulator, a fifth of them held out, and SCDX with the package
# defaults. The diffusion learns every conditional `p(target | source)` alongside the joint
# distribution (`condition_prob=0.5`, the default), which is what the default translation
# method, `method="learned"`, uses.

# %%
mdata, _ = simulate_multiome(n_cells=N_CELLS, n_genes=N_GENES, n_peaks=N_PEAKS, seed=0)
held_out = held_out_mask(mdata.n_obs)  # the package's canonical split: a random fifth
train, test = mdata[~held_out].copy(), mdata[held_out].copy()

SCDX.setup_mudata(train, labels_key="cell_type")
model = SCDX(train)  # the package defaults, the model of record
model.train(**BUDGET, enable_progress_bar=False)
print(model.epochs_trained)  # what ran: early stopping can end the autoencoder stage
print(model)

# %% [markdown]
# ## RNA → ATAC for cells measured in RNA only
#
# The query is a plain AnnData of raw RNA counts with genes as `var_names`; its genes are
# matched to the training genes by name (missing ones would be filled with zeros and
# reported). The result is an AnnData of accessibility probabilities, cells × training peaks,
# with the query's `obs`.

# %%
rna_only = test["rna"].copy()  # what a user would read from an RNA-only .h5ad
print(rna_only)
atac_predicted = model.get_translated_modality(
    rna_only, source_modality="rna", target_modality="atac", seed=0
)
print(atac_predicted)

# %% [markdown]
# Scored per peak: the AUROC of the predicted probabilities against the measured accessibility
# (counts binarised at > 0) across the held-out cells. 0.5 is chance, which is also what any
# prediction that is the same for every cell scores.

# %%
auroc = auroc_per_feature(test["atac"].X, atac_predicted.X)
print(f"RNA -> ATAC: mean per-peak AUROC {np.nanmean(auroc):.3f} over {np.isfinite(auroc).sum()}")
print(f"peaks with AUROC > 0.7: {np.mean(auroc[np.isfinite(auroc)] > 0.7):.1%}")

# %% [markdown]
# A reference point from the same model: the held-out cells' ATAC decoded from their own
# measured ATAC (stage 1 alone, `get_normalized_accessibility`), which is what the decoder
# reaches when the ATAC latent is exact. A translation carries information about each cell to
# the extent that it scores above 0.5, towards this value.

# %%
reconstructed = model.get_normalized_accessibility(test, return_numpy=True)
auroc_own = auroc_per_feature(test["atac"].X, reconstructed)
print(f"ATAC decoded from its own ATAC: mean per-peak AUROC {np.nanmean(auroc_own):.3f}")

# %% [markdown]
# ## ATAC → RNA for cells measured in ATAC only
#
# The other direction is the same call with the roles swapped. Translated RNA is expression
# per `library_size` counts (10,000 by default), compared per gene with the measured
# log1p(counts per 10k) by Pearson correlation across cells (0 for a constant prediction).

# %%
atac_only = test["atac"].copy()
rna_predicted = model.get_translated_modality(
    atac_only, source_modality="atac", target_modality="rna", seed=0
)
measured = log_cp10k(test["rna"].X)
pearson = pearson_per_feature(measured, np.log1p(rna_predicted.X))
print(f"ATAC -> RNA: mean per-gene Pearson {pearson.mean():.3f} over {pearson.size} genes")
own = model.get_normalized_expression(test, library_size=1e4, return_numpy=True)
pearson_own = pearson_per_feature(measured, np.log1p(own))
print(f"RNA decoded from its own RNA: mean per-gene Pearson {pearson_own.mean():.3f}")

# %% [markdown]
# The distributions of both scores over features, and for the best-predicted gene, predicted
# against measured expression in each held-out cell.

# %%
best = int(np.argmax(pearson))
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
axes[0].hist(auroc[np.isfinite(auroc)], bins=40)
axes[0].axvline(0.5, color="k", lw=1)
axes[0].set(xlabel="per-peak AUROC", ylabel="peaks", title="RNA → ATAC")
axes[1].hist(pearson, bins=40)
axes[1].axvline(0.0, color="k", lw=1)
axes[1].set(xlabel="per-gene Pearson", ylabel="genes", title="ATAC → RNA")
axes[2].scatter(np.log1p(rna_predicted.X[:, best]), measured[:, best].toarray().ravel(), s=6)
axes[2].set(
    xlabel="translated log1p(expression per 10k)",
    ylabel="measured log1p(CP10k)",
    title=f"{test['rna'].var_names[best]} (r = {pearson[best]:.2f})",
)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Known cell types, point estimates and samples
#
# Two options change what is predicted:
#
# * `labels`: when the cell types of the query cells are known, a column of the query's `obs`
#   (or one label per cell) conditions the translation on them; by default the model uses its
#   null label, learned with label dropout.
# * `sampler`: `"mean"` (the default) returns the denoiser's estimate of the conditional mean
#   of the target latent in one evaluation (deterministic, the point estimate for imputation
#   and correlation-type scores); `"dpm++2m"` (6 steps by default), `"ddim"` or `"ddpm"`
#   draw a sample of the target given the source instead, a realistic single cell with its
#   variability.
#
# The table scores four combinations in both directions with `translation_score_set`, next to
# the controls of `translation_controls`, fitted on the same training cells: kNN regression (the
# average target of the 15 training cells whose source profiles are closest to the query
# cell's), ridge regression on the source's PCA (LSI for ATAC), and the mean training profile.
# The last two rows are the floor of `latent_floor`: the same kNN and ridge regressions on the
# model's own source latent. A translation below them does not use all that its source latent
# carries.

# %%
rna_only.obs["cell_type"] = test.obs["cell_type"].to_numpy()
atac_only.obs["cell_type"] = test.obs["cell_type"].to_numpy()


queries = {"rna": rna_only, "atac": atac_only}
headline = {"atac": "auroc_per_peak", "rna": "pearson_per_feature"}
table = {}
for source, target in translation_directions(["rna", "atac"]):
    predictions = {}
    for labels in (None, "cell_type"):
        for sampler in ("mean", "dpm++2m"):
            options = {"labels": labels, "sampler": sampler, "seed": 0}
            name = f"SCDX, sampler={sampler!r}, labels={labels or 'none'}"
            predictions[name] = model.get_translated_modality(
                queries[source], source, target, **options
            ).X
    predictions |= translation_controls(
        train[source].X, train[target].X, test[source].X, source, target
    )
    predictions |= latent_floor(
        model.get_latent_representation(train, modality=source), train[target].X,
        model.get_latent_representation(test, modality=source), target,
    )  # fmt: skip
    result = translation_score_set(test[target].X, predictions, target)
    column = f"{source.upper()} -> {target.upper()} {headline[target]}"
    table[column] = {name: s[headline[target]] for name, s in result["scores"].items()}
pd.DataFrame(table).round(3)

# %% [markdown]
# ## Uncertainty
#
# With a sampler that draws samples and `n_samples > 1`, `X` holds the mean over the samples
# and `layers["variance"]` their per-cell, per-feature variance.
#
# On cells it has not seen, a diffusion errs by more than the spread it learned on its training
# cells. After training, `model.train()` therefore fits one factor per direction on the
# validation cells: the samples' distances from the conditional mean are multiplied by the
# factor whose 50, 80 and 90 % intervals hold the validation cells' own values closest to
# those shares (`spread="calibrated"`, the default; `spread="learned"` keeps the diffusion's
# own spread). `model.translation_spread_scores_` holds each factor's coverage.

# %%
sampled = model.get_translated_modality(
    rna_only, "rna", "atac", sampler="dpm++2m", n_samples=5, seed=0
)
print(sampled.layers["variance"].shape, "mean variance:", sampled.layers["variance"].mean())
auroc_5 = auroc_per_feature(test["atac"].X, sampled.X)
print(f"mean per-peak AUROC of the 5-sample mean: {np.nanmean(auroc_5):.3f}")

# %%
for direction, fit in model.translation_spread_scores_.items():
    coverage = dict(zip((0.5, 0.8, 0.9), fit["coverage"][fit["factor"]], strict=True))
    print(f"{direction}: factor {fit['factor']:.2f}, validation coverage {coverage}")
learned = model.get_translated_modality(
    rna_only, "rna", "atac", sampler="dpm++2m", n_samples=5, seed=0, spread="learned"
)
print("mean variance, learned spread:", learned.layers["variance"].mean())
