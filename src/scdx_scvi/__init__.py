"""scdx-scvi: multimodal latent diffusion with Dual Cross Attention, as an scvi-tools plugin."""

from importlib.metadata import PackageNotFoundError, version

# scvi-tools 1.4.2 uses ``rich.pretty`` in ``view_anndata_setup`` without importing it.
import rich.pretty  # noqa: F401

from . import data, datasets, diffusion, metrics, model, module, nn, pl
from .model import SCDX

try:
    __version__ = version("scdx-scvi")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["SCDX", "data", "datasets", "diffusion", "metrics", "model", "module", "nn", "pl"]
