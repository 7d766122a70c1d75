"""Contrastive predictive coding (modified CPC) baseline."""

from .configuration_cpc import CPCConfig
from .modeling_cpc import CPCModel, training_step_flops

__all__ = ["CPCConfig", "CPCModel", "training_step_flops"]
