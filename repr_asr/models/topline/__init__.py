"""The supervised topline: a frame phone classifier trained with the pool's phone labels."""

from .configuration_topline import ToplineConfig
from .modeling_topline import ToplineModel

__all__ = ["ToplineConfig", "ToplineModel"]
