# %% [markdown]
# # Generating paired cells of chosen cell types
#
# Once both stages of SCDX are trained, `model.generate` samples new cells with all their
# modalities at once: the latent diffusion draws one latent per modality, conditioned on a cell
# type, and the autoencoder decodes them into counts. This tutorial trains SCDX on simulated
# paired RNA + ATAC data, asks for cells of given types and checks them against held-out real
# cells: in a UMAP, with distribution distances, and with a classifier of cell types.
#
# It runs in a few minutes on a laptop CPU. With `SCDX_TUTORIAL_QUICK=1` in the environment it
# shrinks to a smoke test of a few seconds (the numbers are then meaningless).

# %%
import logging
import os
import warnings

import anndata as ad
import mudata as md
import pandas as pd
import scanpy as sc
import scvi

from scdx_scvi import SCDX
from scdx_scvi.datasets import simulate_multiome
from scdx_scvi.metrics import (
    REFERENCE_NAME,
    generation_score_set,
    held_out_mask,
    label_composition,
    reference_sample,
)

QUICK = os.environ.get("SCDX_TUTORIAL_QUICK") == "1"
N_CELLS, N_GENES, N_PEAKS = (300, 100, 300) if QUICK else (2000, 500, 2000)
# the package defaults (SCDX(mdata) and model.train()); a tiny budget for the smoke test
BUDGET = {"max_epochs": 2, "max_steps_diffusion": 10} if QUICK else {}
SEEDS = (0,) if QUICK else range(10)  # draws of the generation scores (subsample, folds)

# quieter output: mudata's upcoming default, no Lightning messages or warnings
md.set_options(pull_on_update=False)
for name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", module="lightning")
scvi.settings.seed = 0

# %% [markdown]
# ## Data
#
# `simulate_multiome` draws paired RNA and ATAC counts for cells of six cell types of unequal
# sizes, in two batches (see its documentation for the model). A fifth of the cells is held
# out: the model never sees them, and generated cells are compared with them.

# %%
mdata, _ = simulate_multiome(n_cells=N_CELLS, n_genes=N_GENES, n_peaks=N_PEAKS, seed=0)
held_out = held_out_mask(mdata.n_obs)  # the package's canonical split: a random fifth
train, test = mdata[~held_out].copy(), mdata[held_out].copy()
print(train)
print(test.obs["cell_type"].value_counts().sort_index().to_dict())

# %% [markdown]
# ## Training
#
# `labels_key` registers the cell type, which conditions the diffusion. `SCDX(train)` and
# `model.train()` are the package defaults, the configuration the benchmarks measure:
# `model.train` runs the autoencoder, then the diffusion, and both stop early when their
# validation loss stops improving.

# %%
SCDX.setup_mudata(train, labels_key="cell_type")
model = SCDX(train)  # the package defaults, the model of record
model.train(**BUDGET, enable_progress_bar=False)
print(model)
print("what ran:", model.epochs_trained)

# %% [markdown]
# ## Generating cells of chosen types
#
# `labels` is a dict `{cell type: number of cells}` (or a list with one label per cell). Here
# we ask for as many cells of each type as there are held-out cells, so that the two sets can
# be compared directly. The result is a MuData of sparse counts with the cell type in `obs`.

# %%
request = label_composition(test.obs["cell_type"])
generated = model.generate(labels=request, seed=0)
print(generated)
print(generated.obs["cell_type"].value_counts().sort_index().to_dict())

# %% [markdown]
# ## Real and generated cells in one UMAP
#
# The RNA of held-out and generated cells, normalised to counts per 10k and log-transformed,
# with a PCA and a UMAP computed on both sets together. Generated cells should lie on the real
# cells of their own type.

# %%
real_rna = test["rna"].copy()
real_rna.obs["cell_type"] = test.obs["cell_type"].to_numpy()
both = ad.concat(
    {"real": real_rna, "generated": generated["rna"]}, label="origin", index_unique="-"
)
both.obs["cell_type"] = both.obs["cell_type"].astype("category")
sc.pp.normalize_total(both, target_sum=1e4)
sc.pp.log1p(both)
sc.pp.pca(both, n_comps=30)
sc.pp.neighbors(both, random_state=0)
sc.tl.umap(both, random_state=0)
sc.pl.umap(both, color=["origin", "cell_type"], wspace=0.3)

# %% [markdown]
# ## How close are generated cells to real ones?
#
# `generation_score_set` compares each set of cells with the held-out cells, both sets treated
# alike: equal sizes, one embedding fitted on the two sets together (a PCA of log1p counts per
# 10k for RNA, LSI for ATAC) and a random forest scored on cells it did not see. It reports the
# RBF-kernel MMD and the energy distance (0 for identical distributions), the AUC of the forest
# that tries to tell the sets apart (0.5 when it cannot), a kNN mixing score (1 when the two
# sets are perfectly mixed) and, with labels, the share of cells that a kNN classifier fitted on
# the held-out cells assigns to the type they carry. The same scores for real training cells of
# the held-out composition (`reference_sample`) are the real-vs-real floor: what a perfect
# generator would reach on this data.

# %%
labels_test = test.obs["cell_type"].astype(str).to_numpy()
labels_train = train.obs["cell_type"].astype(str).to_numpy()
composition = label_composition(labels_test, min(train.n_obs, 3 * test.n_obs), labels_train)
reference = reference_sample(train.n_obs, composition, labels_train, seed=0)
labels = {
    "SCDX generated": generated.obs["cell_type"].astype(str).to_numpy(),
    REFERENCE_NAME: labels_train[reference],
}
rows = {}
for modality in ("rna", "atac"):
    sets = {"SCDX generated": generated[modality].X, REFERENCE_NAME: train[modality].X[reference]}
    scores = generation_score_set(
        test[modality].X, sets, modality, labels_test, labels, n_comps=20, seeds=SEEDS
    )
    rows.update({(modality, name): row for name, row in scores.items()})
columns = ["mmd_rbf", "energy_distance", "classifier_auc", "mixing", "label_accuracy"]
pd.DataFrame(rows).T[columns].round(3)

# %% [markdown]
# ## One cell type at a time
#
# The same call generates a single population, e.g. 200 cells of the rarest type. Generation
# is reproducible: the same `seed` gives the same cells.

# %%
rarest = min(request, key=request.get)
rare = model.generate(labels={rarest: 200}, seed=1)
again = model.generate(labels={rarest: 200}, seed=1)
assert (rare["rna"].X != again["rna"].X).nnz == 0
print(rarest, rare["rna"].shape, "mean RNA counts per cell:", rare["rna"].X.sum(1).mean().round(1))
