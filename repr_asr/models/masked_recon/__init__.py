"""Masked reconstruction upstream (Mockingjay / TERA)."""

from .configuration_masked_recon import MaskedReconConfig
from .modeling_masked_recon import MaskedReconModel

__all__ = ["MaskedReconConfig", "MaskedReconModel"]
