# %% [markdown]
# # Mosaic data: training when some cells lack a modality
#
# Experiments often combine paired cells (RNA and ATAC from the same cell) with cells measured
# in one modality only. SCDX trains on such mosaic data directly: each autoencoder learns from
# the cells that have its modality, the diffusion learns the joint distribution from the paired
# cells and each modality's own distribution from the others, and translation then imputes the
# missing modality of the unpaired cells. This tutorial hides the ATAC of half of the training
# cells of a simulated data set, trains on the result and scores the imputed ATAC against what
# was hidden.
#
# It runs in a few minutes on a laptop CPU; `SCDX_TUTORIAL_QUICK=1` shrinks it to a smoke test.

# %%
import logging
import os
import warnings

import mudata as md
import numpy as np
import scvi

from scdx_scvi import SCDX
from scdx_scvi.data import pad_mosaic
from scdx_scvi.datasets import simulate_multiome
from scdx_scvi.metrics import auroc_per_feature

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
# ## Building mosaic data
#
# MuData stores unpaired cells by giving each modality only the cells it measured. Here every
# training cell keeps its RNA, and a random half keeps its ATAC; the hidden ATAC is kept aside
# to score the imputation later. A fifth of all cells is held out as before.

# %%
mdata, _ = simulate_multiome(n_cells=N_CELLS, n_genes=N_GENES, n_peaks=N_PEAKS, seed=0)
held_out = np.random.default_rng(0).random(mdata.n_obs) < 0.2
train, test = mdata[~held_out].copy(), mdata[held_out].copy()

paired = np.random.default_rng(1).random(train.n_obs) < 0.5
mosaic = md.MuData({"rna": train["rna"].copy(), "atac": train["atac"][paired].copy()})
mosaic.obs["cell_type"] = train.obs["cell_type"]
print(mosaic)

# %% [markdown]
# `pad_mosaic` aligns the modalities for `setup_mudata`: every modality gets every cell, with
# all-zero rows for the cells it did not measure, and `obs` gains boolean `has_<modality>`
# columns. Passing `observed_keys` tells SCDX which rows are measured, so that an all-zero row
# is never mistaken for a measured cell with no counts.

# %%
padded = pad_mosaic(mosaic)
print(padded)
print(padded.obs[["has_rna", "has_atac"]].value_counts())

SCDX.setup_mudata(padded, labels_key="cell_type", observed_keys={"atac": "has_atac"})
model = SCDX(padded, architecture="small", n_channels=32)
model.train(max_epochs=AE_EPOCHS, max_steps_diffusion=DIFFUSION_STEPS, enable_progress_bar=False)
print(model)

# %% [markdown]
# ## Imputing the ATAC of the unpaired cells
#
# Without a query, `get_translated_modality` translates the registered cells; `indices` picks
# the ones that lack ATAC.

# %%
unpaired = np.flatnonzero(~padded.obs["has_atac"].to_numpy())
imputed = model.get_translated_modality(
    source_modality="rna", target_modality="atac", indices=unpaired, seed=0
)
print(imputed)

# %% [markdown]
# The imputation is scored against the ATAC that was hidden, per peak by AUROC (0.5 is chance);
# the held-out cells, which the model never saw, are translated and scored the same way.

# %%
hidden = train["atac"][padded.obs_names[unpaired]].X
auroc_unpaired = auroc_per_feature(hidden, imputed.X)
translated_test = model.get_translated_modality(test["rna"].copy(), "rna", "atac", seed=0)
auroc_test = auroc_per_feature(test["atac"].X, translated_test.X)
print(f"unpaired training cells: mean per-peak AUROC {np.nanmean(auroc_unpaired):.3f}")
print(f"held-out cells:          mean per-peak AUROC {np.nanmean(auroc_test):.3f}")

# %% [markdown]
# The stage-1 getters (`get_normalized_accessibility`, ...) decode a modality's own latent,
# which is empty for a cell that lacks the modality: use translation, as above, for those
# cells.
