# %% [markdown]
# # Saving a model and using it without the training data
#
# A trained SCDX model, both stages, is saved to one folder with `model.save` and loaded with
# `SCDX.load`, as any scvi-tools model. The loaded model needs no training data to translate
# new cells or to generate cells: it keeps its training features, cell types and library-size
# priors. This tutorial trains a model, saves it, loads it in place of the original and checks
# that it gives the same results.
#
# It runs in a few minutes on a laptop CPU; `SCDX_TUTORIAL_QUICK=1` shrinks it to a smoke test.

# %%
import logging
import os
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import scvi

from scdx_scvi import SCDX
from scdx_scvi.datasets import read_local, simulate_multiome
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
# ## Train and save
#
# The RNA of the held-out cells is written to its own `.h5ad` file: it stands for new cells
# that arrive later, measured in RNA only.

# %%
mdata, _ = simulate_multiome(n_cells=N_CELLS, n_genes=N_GENES, n_peaks=N_PEAKS, seed=0)
held_out = np.random.default_rng(0).random(mdata.n_obs) < 0.2
train, test = mdata[~held_out].copy(), mdata[held_out].copy()
test["rna"].write_h5ad("new_cells_rna.h5ad")

SCDX.setup_mudata(train, labels_key="cell_type")
model = SCDX(train, architecture="small", n_channels=32)
model.train(max_epochs=AE_EPOCHS, max_steps_diffusion=DIFFUSION_STEPS, enable_progress_bar=False)

# %% [markdown]
# `save` writes the weights of both stages (the diffusion's EMA weights included), the
# registry of the data set-up and the training features to `model.pt`. `save_anndata=True`
# would store the training MuData next to it; it is not needed for what follows.

# %%
model.save("scdx_model", overwrite=True)
for path in sorted(Path("scdx_model").iterdir()):
    print(path.name, f"{path.stat().st_size / 1e6:.1f} MB")

# %% [markdown]
# ## Load without the training data
#
# `SCDX.load` without `adata` restores the model from the folder alone (scvi-tools warns that
# no data was saved with it).

# %%
loaded = SCDX.load("scdx_model", accelerator="cpu")
print(loaded)
print("modalities:", loaded.modalities, "- diffusion trained:", loaded.is_diffusion_trained_)
print("training history kept:", sorted(k for k in loaded.history if k.endswith("validation")))

# %% [markdown]
# ## Translate new cells with the loaded model
#
# `read_local` reads the new cells' `.h5ad` file (an AnnData of raw RNA counts); its genes are
# matched to the training genes by name. With the same `seed`, the loaded model gives exactly
# the translation of the original one.

# %%
new_cells = read_local("new_cells_rna.h5ad")
atac_loaded = loaded.get_translated_modality(new_cells, "rna", "atac", seed=0)
atac_original = model.get_translated_modality(new_cells, "rna", "atac", seed=0)
assert np.array_equal(atac_loaded.X, atac_original.X)  # identical to the original model
auroc = auroc_per_feature(test["atac"].X, atac_loaded.X)
print(f"RNA -> ATAC of the new cells: mean per-peak AUROC {np.nanmean(auroc):.3f}")

# %% [markdown]
# ## Generate with the loaded model
#
# Generation needs no data either; the cell types are those the model was trained on.

# %%
generated = loaded.generate(labels={"type_0": 50, "type_1": 50}, seed=0)
same = model.generate(labels={"type_0": 50, "type_1": 50}, seed=0)
assert (generated["rna"].X != same["rna"].X).nnz == 0  # identical to the original model
print(generated)

# %% [markdown]
# ## Getters on the training cells
#
# The stage-1 getters work on a MuData with the training features: pass it to `load` (or to the
# getter). Here the latents of the training cells agree with those of the original model.

# %%
with_data = SCDX.load("scdx_model", adata=train, accelerator="cpu")
z = with_data.get_latent_representation(modality="joint")
assert np.allclose(z, model.get_latent_representation(modality="joint"), atol=1e-5)
print(z.shape)
