"""Checks of user data before registration."""

from ._validate import check_mudata, check_values, data_modalities, resolve_modalities

__all__ = ["check_mudata", "check_values", "data_modalities", "resolve_modalities"]
