"""Configuration of the no-pretraining baseline: MFCC or log-mel filterbanks as the representation."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ...audio import SPECTRAL_FEATURES


class SpectralConfig(PreTrainedConfig):
    r"""The spectral baseline: the first row of every comparison table.

    Args:
        input_features (`str`, defaults to `"fbank"`): `"fbank"` (80 log-mel) or `"mfcc"` (13 + Δ + ΔΔ).
        sampling_rate (`int`, defaults to `16000`): input sample rate.
        n_mels (`int`, defaults to `80`): mel bands for `"fbank"` (and the mel stage of `"mfcc"`).
        n_mfcc (`int`, defaults to `13`): cepstra for `"mfcc"`.
        normalize_features (`bool`, defaults to `True`): per-utterance mean/variance normalisation over
            real frames only (CMVN), so padding never changes an utterance's features.
        probe_points (`list[str]`, defaults to `["features"]`): the one probe point.
        default_probe_point (`str`, defaults to `"features"`).
    """

    model_type = "spectral"

    def __init__(
        self,
        input_features: str = "fbank",
        sampling_rate: int = 16000,
        n_mels: int = 80,
        n_mfcc: int = 13,
        normalize_features: bool = True,
        probe_points: list | None = None,
        default_probe_point: str = "features",
        **kwargs,
    ):
        if input_features not in SPECTRAL_FEATURES:
            raise ValueError(f"SpectralConfig.input_features must be 'fbank' or 'mfcc', got {input_features!r}")
        self.input_features = input_features
        self.sampling_rate = sampling_rate
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.normalize_features = normalize_features
        self.probe_points = list(probe_points or ["features"])
        self.default_probe_point = default_probe_point
        super().__init__(**kwargs)
