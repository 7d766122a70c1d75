"""WaveNet autoencoder (Chorowski et al. 2019): configuration and model."""

from .configuration_wavenet_ae import WaveNetAEConfig
from .modeling_wavenet_ae import WaveNetAEModel

__all__ = ["WaveNetAEConfig", "WaveNetAEModel"]
