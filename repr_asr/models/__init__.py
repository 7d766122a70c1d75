"""Upstream models (WaveNet autoencoder, CPC, masked reconstruction, spectral baseline) and the CTC head."""

from __future__ import annotations

from .spectral.configuration_spectral import SpectralConfig
from .spectral.modeling_spectral import SpectralModel

SPECTRAL_UPSTREAMS = ("fbank", "mfcc")


def load_upstream(name_or_path: str, **kwargs):
    """The upstream behind a recipe's ``--upstream``: ``"fbank"`` / ``"mfcc"`` (no pretraining) or a
    folder / hub name in ``save_pretrained`` format loaded with ``AutoModel``."""
    if name_or_path in SPECTRAL_UPSTREAMS:
        return SpectralModel(SpectralConfig(input_features=name_or_path))
    import repr_asr  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModel

    return AutoModel.from_pretrained(name_or_path, **kwargs)
