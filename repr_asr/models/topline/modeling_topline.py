"""The supervised topline: log-mel frames ─► 1-D convolutions ─► a phone per frame.

Pipeline (``B`` batch, ``T = 1 + S // 160`` frames at 100 Hz, ``H`` hidden size, ``P`` phones)::

    waveform (B, S) ─► log-mel / MFCC (B, T, F), CMVN over real frames
                    ─► [Conv1d(k, dilation d) ─► ReLU ─► LayerNorm (+ residual from layer 2)] × N
                        ("layer_1" ... "layer_N", (B, T, H))
                    ─► [training: linear (B, T, P), cross-entropy against the frame phone labels]

Padding never changes a feature: every layer zeroes the padded frames before its convolution, so a
padded batch sees the zeros an utterance alone sees past its end.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import can_return_tuple

from ...audio import SpectralFrontEnd
from ...modules.distributed import global_count
from ...modules.masking import lengths_from_mask, mask_from_lengths
from ...modules.normalization import masked_cmvn
from ..upstream import UpstreamMixin, UpstreamOutput
from .configuration_topline import ToplineConfig

IGNORE_LABEL = -100  # frames without a phone label (padding): no loss, as torch's cross_entropy default


class ToplineLayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2)
        self.norm = nn.LayerNorm(out_dim)
        self.dropout = nn.Dropout(dropout)
        self.residual = in_dim == out_dim

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``(B, T, D)``, ``mask`` ``(B, T, 1)``: padded frames are zero in and out."""
        out = self.conv((hidden * mask).transpose(1, 2)).transpose(1, 2)
        out = self.dropout(self.norm(F.relu(out)))
        if self.residual:
            out = out + hidden
        return out * mask


class ToplineModel(UpstreamMixin, PreTrainedModel):
    """A frame phone classifier trained with phone labels: the supervised topline of every table.

    ``forward(input_values, attention_mask, phone_labels=..., compute_loss=True)`` returns the mean frame
    cross-entropy over labelled frames and the frame accuracy; feature extraction never needs labels.

    Example:
        >>> import torch
        >>> from repr_asr.models.topline import ToplineConfig, ToplineModel
        >>> model = ToplineModel(ToplineConfig(hidden_size=16, num_layers=2))
        >>> model(torch.zeros(1, 16000)).last_hidden_state.shape
        torch.Size([1, 101, 16])
    """

    config_class = ToplineConfig
    base_model_prefix = "topline"
    main_input_name = "input_values"
    # Pretraining feeds this model the frame phone labels of each crop (repr_asr.data.crops).
    needs_phone_labels = True

    def __init__(self, config: ToplineConfig):
        super().__init__(config)
        self.front_end = SpectralFrontEnd(config.input_features, config.sampling_rate, config.n_mels, config.n_mfcc)
        dims = [self.front_end.dim] + [config.hidden_size] * config.num_layers
        self.layers = nn.ModuleList(
            ToplineLayer(dims[i], dims[i + 1], config.kernel_size, d, config.dropout)
            for i, d in enumerate(config.layer_dilations)
        )
        self.classifier = nn.Linear(config.hidden_size, len(config.phones))
        self.post_init()

    @property
    def hop_length(self) -> int:
        return self.front_end.hop_length

    def probe_dims(self) -> dict:
        return {p: self.config.hidden_size for p in self.config.probe_points}

    def probe_samples_per_frame(self) -> dict:
        return {p: self.front_end.hop_length for p in self.config.probe_points}

    def frame_lengths_at(self, sample_lengths: torch.Tensor, probe_point: str) -> torch.Tensor:
        self.check_probe_point(probe_point)
        return self.front_end.frame_lengths(sample_lengths)

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
        compute_loss: bool = False,
        phone_labels: Optional[torch.Tensor] = None,
        **kwargs,  # example_seeds, speaker_ids: what every pretraining batch carries; unused here
    ) -> UpstreamOutput:
        """``phone_labels`` ``(B, T)``: the phone id of each frame (``-100``: no label), needed with ``compute_loss``."""
        features, frame_lengths = self.front_end.padded_batch(input_values, lengths_from_mask(attention_mask, input_values))
        hidden = masked_cmvn(features, frame_lengths)
        mask = mask_from_lengths(frame_lengths, hidden.shape[1]).unsqueeze(-1).to(hidden.dtype)
        probes = {}
        for index, layer in enumerate(self.layers, start=1):
            hidden = layer(hidden, mask)
            probes[f"layer_{index}"] = hidden
        loss = metrics = None
        if compute_loss:
            if phone_labels is None:
                raise ValueError("ToplineModel: compute_loss needs phone_labels (the frame phone ids of each crop)")
            loss, metrics = self.phone_loss(hidden, phone_labels, frame_lengths)
        return self.upstream_output(probes, frame_lengths, output_hidden_states, loss, metrics)

    def phone_loss(self, hidden: torch.Tensor, labels: torch.Tensor, frame_lengths: torch.Tensor):
        """Frame cross-entropy summed over labelled real frames, divided by the count every process shares."""
        frames = min(hidden.shape[1], labels.shape[1])
        logits = self.classifier(hidden[:, :frames]).float()
        labels = labels[:, :frames].masked_fill(~mask_from_lengths(frame_lengths, frames), IGNORE_LABEL)
        valid = labels != IGNORE_LABEL
        count = valid.sum().float()
        total = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_LABEL, reduction="sum",
                                label_smoothing=self.config.label_smoothing)
        loss = total / global_count(count).clamp(min=1.0)
        correct = ((logits.argmax(-1) == labels) & valid).sum().float()
        metrics = {"loss": loss.detach(), "frame_accuracy": (correct / count.clamp(min=1.0)).detach()}
        return loss, metrics
