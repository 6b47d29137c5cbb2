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
import numpy as np
import pandas as pd
import scanpy as sc
import scvi

from scdx_scvi import SCDX
from scdx_scvi.datasets import simulate_multiome
from scdx_scvi.metrics import generation_scores, knn_label_transfer_accuracy, pca_projection

QUICK = os.environ.get("SCDX_TUTORIAL_QUICK") == "1"
N_CELLS, N_GENES, N_PEAKS = (300, 100, 300) if QUICK else (2000, 500, 2000)
AE_EPOCHS = 2 if QUICK else 60
DIFFUSION_STEPS = 10 if QUICK else 1500

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
held_out = np.random.default_rng(0).random(mdata.n_obs) < 0.2
train, test = mdata[~held_out].copy(), mdata[held_out].copy()
print(train)
print(test.obs["cell_type"].value_counts().sort_index().to_dict())

# %% [markdown]
# ## Training
#
# `labels_key` registers the cell type, which conditions the diffusion. The sizes are chosen
# for a CPU and this small data set: the `"small"` autoencoder preset and a U-Net of width 32
# (the default is 128). `model.train` runs the autoencoder, then the diffusion; both stop early
# when their validation loss stops improving.

# %%
SCDX.setup_mudata(train, labels_key="cell_type")
model = SCDX(train, architecture="small", n_channels=32)
model.train(max_epochs=AE_EPOCHS, max_steps_diffusion=DIFFUSION_STEPS, enable_progress_bar=False)
print(model)
print(
    "autoencoder epochs:",
    len(model.history["reconstruction_loss_validation"]),
    "- diffusion epochs:",
    len(model.diffusion_history["diffusion_loss_validation"]),
)

# %% [markdown]
# ## Generating cells of chosen types
#
# `labels` is a dict `{cell type: number of cells}` (or a list with one label per cell). Here
# we ask for as many cells of each type as there are held-out cells, so that the two sets can
# be compared directly. The result is a MuData of sparse counts with the cell type in `obs`.

# %%
request = {str(k): int(v) for k, v in test.obs["cell_type"].value_counts().items()}
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
# `generation_scores` projects both sets on the principal components of the real cells and
# compares the two point clouds: the RBF-kernel MMD and the energy distance (0 for identical
# distributions), the AUC of a random forest that tries to tell generated from real cells (0.5
# when it cannot) and a kNN mixing score (1 when the two sets are perfectly mixed). For scale,
# the same scores between the held-out cells and as many real training cells tell how far apart
# two samples of real cells are.

# %%
rng = np.random.default_rng(0)
train_sample = train["rna"].X[rng.choice(train.n_obs, size=test.n_obs, replace=False)]
rows = {
    "generated vs held-out": generation_scores(test["rna"].X, generated["rna"].X, n_comps=20),
    "real training vs held-out": generation_scores(test["rna"].X, train_sample, n_comps=20),
}
pd.DataFrame(rows).T[["mmd_rbf", "energy_distance", "classifier_auc", "mixing"]].round(3)

# %% [markdown]
# ## Do generated cells have the requested type?
#
# A kNN classifier fitted on the held-out real cells (in the PCA of their RNA, and of their
# binarised ATAC) predicts the type of each generated cell; the accuracy is the share of cells
# classified as the type they were generated as.

# %%
labels_real = test.obs["cell_type"].to_numpy()
labels_generated = generated.obs["cell_type"].to_numpy()
accuracy = {}
for modality, log_normalize in (("rna", True), ("atac", False)):
    real_x, generated_x = test[modality].X, generated[modality].X
    if modality == "atac":
        real_x = (real_x > 0).astype(np.float32)
    real_pcs, generated_pcs = pca_projection(
        real_x, generated_x, n_comps=20, log_normalize=log_normalize
    )
    scores = knn_label_transfer_accuracy(real_pcs, labels_real, generated_pcs, labels_generated)
    accuracy[modality] = round(scores["accuracy"], 3)
print("cell-type accuracy of generated cells:", accuracy)

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
