"""Neural-network building blocks."""

from ._mlp import MLP

__all__ = ["MLP"]
