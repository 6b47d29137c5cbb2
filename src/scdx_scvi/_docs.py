"""Docstring templates shared by the getters (rendered with docrep, as scvi-tools does)."""

from docrep import DocstringProcessor

getter_dsp = DocstringProcessor(
    param_adata="""\
adata
    MuData with the registered modalities (default: the data the model was set up with).
    New data is checked and set up like the training data; its features must match.""",
    param_indices="""\
indices
    Cells to use (default: all).""",
    param_transform_batch="""\
transform_batch
    Decode every cell as if it came from this batch (needs a batch-conditioned model).""",
    param_batch_size="""\
batch_size
    Cells per minibatch (default: ``scvi.settings.batch_size``).""",
    param_return_numpy="""\
return_numpy
    Return an array instead of a DataFrame.""",
    param_mdata="""\
mdata
    Alias of ``adata``.""",
)
