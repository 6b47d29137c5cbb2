# %% [markdown]
# # The SCDX autoencoder on CITE-seq (RNA + protein)
#
# Stage 1 of SCDX compresses each modality into its own latent. This tutorial registers a
# CITE-seq MuData, trains the autoencoder, inspects the per-modality losses, scores held-out
# reconstruction and saves the model. It runs in about a minute on a laptop CPU.
#
# The data is the NeurIPS 2021 bone-marrow CITE-seq starter set (600 cells, 1,000 genes, 134
# proteins) that the package's tests use; set `SCDX_TUTORIAL_DATA` to the path of any paired
# RNA + protein `.h5mu` file with raw counts, a `cell_type` and a `batch` column to run it on
# other data. With `SCDX_TUTORIAL_QUICK=1` in the environment it shrinks to a smoke test of a
# few seconds.

# %%
import logging
import os
import warnings
from pathlib import Path

import mudata as md
import numpy as np
import scvi

from scdx_scvi import SCDX
from scdx_scvi.metrics import reconstruction_scores

QUICK = os.environ.get("SCDX_TUTORIAL_QUICK") == "1"
DATA = Path(
    os.environ.get(
        "SCDX_TUTORIAL_DATA",
        "../../shared/data/neurips2021_bmmc_cite_starter/neurips2021_bmmc_cite_starter.h5mu",
    )
)
MAX_EPOCHS = 2 if QUICK else 200

# quieter output: mudata's upcoming default, no Lightning messages or warnings
md.set_options(pull_on_update=False)
for name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", module="lightning")
scvi.settings.seed = 0

# %% [markdown]
# Raw counts in both modalities; hold out 20% of the cells.

# %%
mdata = md.read_h5mu(DATA)
test = np.random.default_rng(0).random(mdata.n_obs) < 0.2
train, held_out = mdata[~test].copy(), mdata[test].copy()
print(train)

# %% [markdown]
# Register RNA and protein (the modality names are inferred: `rna`, `protein`), with the cell
# type as labels and the donor/site batch.

# %%
SCDX.setup_mudata(train, labels_key="cell_type", batch_key="batch")
model = SCDX(train, architecture="small")
model.train_autoencoder(max_epochs=MAX_EPOCHS, enable_progress_bar=False)

# %% [markdown]
# Each modality's reconstruction loss is logged separately, for training and validation cells.

# %%
history = {k: v.iloc[-1, 0] for k, v in model.history.items() if k.startswith("reconstruction")}
print(history)

# %% [markdown]
# Held-out cells: the getters accept any MuData with the same features.

# %%
predicted = model.get_normalized_modalities(held_out, library_size=1e4)
scores = reconstruction_scores({m: held_out[m].X for m in ("rna", "protein")}, predicted)
print(scores)
z_protein = model.get_latent_representation(held_out, modality="protein")
print(z_protein.shape)

# %%
model.save("scdx_cite_model", overwrite=True, save_anndata=True)
reloaded = SCDX.load("scdx_cite_model")
assert np.array_equal(
    reloaded.get_latent_representation(held_out), model.get_latent_representation(held_out)
)
