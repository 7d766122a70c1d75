"""What every upstream shares: probe points, frame rate, lengths, and the output type.

An upstream maps ``input_values`` ``(batch, samples)`` at 16 kHz to hidden states ``(batch, frames,
dim)`` at named probe points. Downstream code (CTC, probes, ABX) relies only on this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers.utils import ModelOutput


@dataclass
class UpstreamOutput(ModelOutput):
    """Output of every upstream model.

    Attributes:
        loss: the pretraining loss (scalar) when the model was asked to compute it, else ``None``.
        last_hidden_state: ``(batch, frames, dim)`` features at ``config.default_probe_point``.
        hidden_states: one ``(batch, frames_p, dim_p)`` tensor per entry of ``config.probe_points``,
            in that order (only with ``output_hidden_states=True``).
        frame_lengths: ``(batch,)`` number of real frames of ``last_hidden_state`` per utterance.
        metrics: scalar tensors worth logging (loss terms, accuracies, code usage, bitrate).
    """

    loss: Optional[torch.Tensor] = None
    last_hidden_state: Optional[torch.Tensor] = None
    hidden_states: Optional[tuple] = None
    frame_lengths: Optional[torch.Tensor] = None
    metrics: Optional[dict] = None


def lengths_from_mask(attention_mask: Optional[torch.Tensor], input_values: torch.Tensor) -> torch.Tensor:
    """``(batch,)`` real sample counts from an attention mask (all samples when there is none)."""
    if attention_mask is None:
        return torch.full((input_values.shape[0],), input_values.shape[-1], dtype=torch.long, device=input_values.device)
    return attention_mask.long().sum(-1)


def mask_from_lengths(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(batch, max_len)`` boolean mask, True at real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class UpstreamMixin:
    """Mixed into every upstream ``PreTrainedModel``.

    A subclass sets ``samples_per_frame`` on itself for each probe point through
    ``probe_samples_per_frame`` (dict probe point → samples per frame) and implements
    ``frame_lengths_at(sample_lengths, probe_point)``.
    """

    @property
    def probe_points(self) -> list[str]:
        return list(self.config.probe_points)

    @property
    def default_probe_point(self) -> str:
        return self.config.default_probe_point

    def samples_per_frame(self, probe_point: Optional[str] = None) -> int:
        """Input samples per output frame at ``probe_point`` (default: the default probe point)."""
        return self.probe_samples_per_frame()[probe_point or self.default_probe_point]

    def frame_rate(self, probe_point: Optional[str] = None) -> float:
        """Frames per second at ``probe_point``."""
        return self.config.sampling_rate / self.samples_per_frame(probe_point)

    def frame_lengths(self, sample_lengths: torch.Tensor, probe_point: Optional[str] = None) -> torch.Tensor:
        """Real frames per utterance at ``probe_point`` for ``(batch,)`` real sample counts."""
        return self.frame_lengths_at(sample_lengths, probe_point or self.default_probe_point)

    def probe_samples_per_frame(self) -> dict:
        raise NotImplementedError

    def frame_lengths_at(self, sample_lengths: torch.Tensor, probe_point: str) -> torch.Tensor:
        raise NotImplementedError
