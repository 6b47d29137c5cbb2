"""Figures of generated and translated cells (matplotlib, through scanpy's plotting)."""

from ._figures import feature_scatter, umap_real_vs_generated

__all__ = ["feature_scatter", "umap_real_vs_generated"]
