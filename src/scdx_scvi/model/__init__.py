"""User-facing scvi-tools models."""

from ._scdx import SCDX

__all__ = ["SCDX"]
