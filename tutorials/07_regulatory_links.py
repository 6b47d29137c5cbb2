# %% [markdown]
# # Gene–peak links and in-silico perturbation
#
# `model.get_regulatory_links` scores candidate regulatory links between peaks and genes, and
# `model.get_perturbation_effect` predicts what perturbing features of one modality does to the
# other. This tutorial runs both on simulated paired RNA + ATAC cells whose gene–peak links are
# known (planted by the simulator), so every method can be scored against the truth, next to
# the two baselines that matter in this field: distance to the TSS and peak–gene correlation.
# It ends with the candidate set and the baselines on real SNARE-seq data (mouse cortex), with
# a TSS table.
#
# It runs in a few minutes on a laptop CPU (a short training: the links are only as good as the
# model's translation); `SCDX_TUTORIAL_QUICK=1` shrinks it to a smoke test.

# %%
import logging
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import mudata as md
import numpy as np
import pandas as pd
import scvi
from sklearn.metrics import average_precision_score, roc_auc_score

from scdx_scvi import SCDX
from scdx_scvi.data import read_tss_bed
from scdx_scvi.datasets import simulate_multiome

QUICK = os.environ.get("SCDX_TUTORIAL_QUICK") == "1"
N_CELLS, N_GENES, N_PEAKS = (300, 100, 500) if QUICK else (1000, 300, 1500)
AE_EPOCHS = 2 if QUICK else 25
DIFFUSION_STEPS = 10 if QUICK else 500
N_SCORED = 100 if QUICK else 200

md.set_options(pull_on_update=False)
for name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", module="lightning")
scvi.settings.seed = 0

# %% [markdown]
# ## Data and model
#
# The simulator places genes and peaks on chromosomes (`var` columns `chrom`, `start`, `end`;
# a gene's TSS is its `start`) and plants links: an open linked peak raises its gene's
# expression. It returns them as a table with the size of each effect.

# %%
mdata, planted = simulate_multiome(n_cells=N_CELLS, n_genes=N_GENES, n_peaks=N_PEAKS, seed=0)
print(planted.head())
SCDX.setup_mudata(mdata, labels_key="cell_type")
model = SCDX(mdata, architecture="small", n_channels=32)
model.train(max_epochs=AE_EPOCHS, max_steps_diffusion=DIFFUSION_STEPS, enable_progress_bar=False)

# %% [markdown]
# ## Links: one candidate set, four methods
#
# With coordinates, the candidates are the gene–peak pairs whose peak centre lies within
# `window` bp of the TSS (150 kb by default). Every method scores exactly these pairs:
#
# * `"gradient"` (default): the model's translation ATAC → RNA differentiated with respect
#   to each peak, averaged over cells — how much opening the peak raises the gene's predicted
#   expression — z-scored against background peaks;
# * `"attention"`: the reference scDiffusion-X pipeline (Dual Cross Attention of the middle
#   block, hidden units mapped to genes and peaks by gradients, pairs within 120 kb);
# * `"correlation"`: peak–gene Pearson correlation z-scored against background peaks matched
#   for accessibility and width (as Signac's `LinkPeaks`);
# * `"distance"`: closer is stronger.

# %%
truth = set(zip(planted["gene"], planted["peak"], strict=True))
tables, rows = {}, {}
for method in ("gradient", "attention", "correlation", "distance"):
    links = model.get_regulatory_links(method=method, n_cells=N_SCORED)
    tables[method] = links
    y = np.array([pair in truth for pair in zip(links["gene"], links["peak"], strict=True)])
    rows[method] = {
        "AUROC": roc_auc_score(y, links["score"]),
        "AUPRC": average_precision_score(y, links["score"]),
    }
rows["random"] = {"AUROC": 0.5, "AUPRC": y.mean()}
print(f"{len(links)} candidate pairs, {y.sum()} of them planted links")
pd.DataFrame(rows).T.round(3)

# %% [markdown]
# The result is a DataFrame with one row per candidate: `score` (higher is stronger; the
# z-score for the gradient and correlation methods), `raw_score` (the mean derivative, or the
# correlation) and the distance in bp. The strongest model-based links:

# %%
tables["gradient"].sort_values("score", ascending=False).head(10)

# %% [markdown]
# Per cell type: `groupby` scores the links within each type's cells.

# %%
per_type = model.get_regulatory_links(method="correlation", groupby="cell_type")
per_type.pivot_table(index=["gene", "peak"], columns="cell_type", values="score").head()

# %% [markdown]
# ## In-silico perturbation, both directions
#
# `get_perturbation_effect` perturbs features of the source modality in the chosen cells and
# translates the perturbed and the unperturbed cells with the **same seeds**, so the
# difference is the effect of the perturbation alone. Peak → genes: open a planted peak in
# every cell and read out the genes.

# %%
peak = planted.sort_values("effect").iloc[-1]["peak"]
opened = model.get_perturbation_effect([peak], "atac", "rna", perturbation="overexpress")
linked_genes = set(planted.loc[planted["peak"] == peak, "gene"])
opened["planted link"] = opened["feature"].isin(linked_genes)
opened.sort_values("log2_fold_change", ascending=False).head()

# %% [markdown]
# Gene → peaks: knock out a gene (its counts set to 0) in the cells that express it, with 5
# samples of a stochastic sampler per arm for the uncertainty (`sd`, `z`, a 95% interval).

# %%
gene = planted.iloc[0]["gene"]
expressing = np.flatnonzero(mdata["rna"][:, gene].X.toarray().ravel() > 0)
knockout = model.get_perturbation_effect(
    [gene], "rna", "atac", indices=expressing, n_samples=2 if QUICK else 5, n_steps=10
)
knockout.sort_values("z").head()

# %% [markdown]
# ## Real data: SNARE-seq mouse cortex with an mm10 TSS table
#
# Peaks of real data are located by their names (`chr1_4914570_4914685`, `chr1:...-...` or
# `chr1-...-...`) or by `var` columns; genes by a TSS table (BED), here GENCODE vM25 from
# the package's test data. There is no ground truth for these links; the baselines below need
# no trained model, the model-based methods do (see the benchmarks for a trained run).

# %%
shared = Path(os.environ.get("SCDX_TUTORIAL_DATA", "")).parents[1]
snare = md.read_h5mu(shared / "snareseq_mop" / "snareseq_mop.h5mu")
if QUICK:
    snare = snare[:500].copy()
tss = read_tss_bed(shared / "annotations" / "mm10_gencode_vM25_tss500bp.bed")
SCDX.setup_mudata(snare, labels_key="cell_type")
real = SCDX(snare, architecture="small")  # baselines only: no training needed
correlation = real.get_regulatory_links(method="correlation", tss=tss)
print(f"{len(correlation)} candidate pairs over {correlation['gene'].nunique()} genes")
top = correlation.nlargest(1000, "score")
fig, ax = plt.subplots(figsize=(5, 3.2))
bins = np.linspace(0, 150, 16)
ax.hist(correlation["distance"] / 1e3, bins=bins, density=True, alpha=0.5, label="all candidates")
ax.hist(top["distance"] / 1e3, bins=bins, density=True, alpha=0.5, label="top 1,000 links")
ax.set(xlabel="peak centre – TSS distance (kb)", ylabel="density", title="correlation links")
ax.legend()
plt.show()
