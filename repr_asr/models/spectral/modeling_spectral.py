"""The no-pretraining upstream: MFCC or filterbanks behind the same interface as learned upstreams."""

from __future__ import annotations

from typing import Optional

import torch
from transformers import PreTrainedModel
from transformers.utils import can_return_tuple

from ...audio import SpectralFrontEnd
from ...modules.masking import lengths_from_mask
from ...modules.normalization import masked_cmvn
from ..upstream import UpstreamMixin, UpstreamOutput
from .configuration_spectral import SpectralConfig


class SpectralModel(UpstreamMixin, PreTrainedModel):
    """Log-mel filterbanks or MFCC at 100 Hz as ``last_hidden_state``; no trainable weights.

    Example:
        >>> import torch
        >>> from repr_asr import SpectralConfig, SpectralModel
        >>> model = SpectralModel(SpectralConfig(input_features="mfcc"))
        >>> model(torch.zeros(1, 16000)).last_hidden_state.shape
        torch.Size([1, 101, 39])
    """

    config_class = SpectralConfig
    base_model_prefix = "spectral"
    main_input_name = "input_values"

    def __init__(self, config: SpectralConfig):
        super().__init__(config)
        self.front_end = SpectralFrontEnd(config.input_features, config.sampling_rate, config.n_mels, config.n_mfcc)
        self.post_init()

    @property
    def dtype(self) -> torch.dtype:
        # No parameters to read a dtype from; features are always computed in float32.
        return torch.float32

    @property
    def hidden_size(self) -> int:
        return self.front_end.dim

    def probe_dims(self) -> dict:
        return {"features": self.front_end.dim}

    def probe_samples_per_frame(self) -> dict:
        return {"features": self.front_end.hop_length}

    def frame_lengths_at(self, sample_lengths: torch.Tensor, probe_point: str) -> torch.Tensor:
        self.check_probe_point(probe_point)
        return self.front_end.frame_lengths(sample_lengths)

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
        **kwargs,
    ) -> UpstreamOutput:
        # Each utterance gets its lone features (padded_batch zeroes the padding).
        features, frame_lengths = self.front_end.padded_batch(input_values, lengths_from_mask(attention_mask, input_values))
        if self.config.normalize_features:
            features = masked_cmvn(features, frame_lengths)
        return self.upstream_output({"features": features}, frame_lengths, output_hidden_states)
