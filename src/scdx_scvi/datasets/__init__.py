"""Datasets: a simulator of paired multi-omics with known regulatory links, and loaders."""

from ._loaders import (
    PBMC_MULTIOME_10X_SHA256,
    PBMC_MULTIOME_10X_URL,
    pbmc_multiome_10x,
    read_10x_multiome,
    read_local,
)
from ._simulate import simulate_multiome

__all__ = [
    "PBMC_MULTIOME_10X_SHA256",
    "PBMC_MULTIOME_10X_URL",
    "pbmc_multiome_10x",
    "read_10x_multiome",
    "read_local",
    "simulate_multiome",
]
