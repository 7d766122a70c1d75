"""What every upstream shares: probe points, frame rates and lengths, and the output of ``forward``.

An upstream maps ``input_values`` ``(batch, samples)`` at 16 kHz to hidden states ``(batch, frames,
dim)`` at named probe points. Downstream code (CTC, probes, ABX) relies only on this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers.utils import ModelOutput

# upstream_ctc still imports these two from here; they live in modules/ (what modules/ may import).


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


class UpstreamMixin:
    """Mixed into every upstream ``PreTrainedModel``: the probe-point bookkeeping and the forward's output.

    A subclass implements ``probe_dims()`` and ``probe_samples_per_frame()`` (dicts probe point → dim /
    input samples per frame) and ``frame_lengths_at(sample_lengths, probe_point)`` (which starts with
    :meth:`check_probe_point`), and ends its ``forward`` with :meth:`upstream_output`. ``forward`` carries
    transformers' ``@can_return_tuple``: ``return_dict=False`` (or ``config.return_dict = False``) gives
    ``output.to_tuple()`` (the fields that are not ``None``, in order) instead of the :class:`UpstreamOutput`.
    """

    @property
    def probe_points(self) -> list[str]:
        return list(self.config.probe_points)

    @property
    def default_probe_point(self) -> str:
        return self.config.default_probe_point

    def check_probe_point(self, probe_point: str) -> str:
        """``probe_point`` itself, or a ``ValueError`` naming the model's probe points when it has no such one."""
        if probe_point not in self.config.probe_points:
            raise ValueError(f"{type(self).__name__} has no probe point {probe_point!r}; it has {self.probe_points}")
        return probe_point

    def samples_per_frame(self, probe_point: Optional[str] = None) -> int:
        """Input samples per output frame at ``probe_point`` (default: the default probe point)."""
        return self.probe_samples_per_frame()[self.check_probe_point(probe_point or self.default_probe_point)]

    def frame_rate(self, probe_point: Optional[str] = None) -> float:
        """Frames per second at ``probe_point``."""
        return self.config.sampling_rate / self.samples_per_frame(probe_point)

    def frame_lengths(self, sample_lengths: torch.Tensor, probe_point: Optional[str] = None) -> torch.Tensor:
        """Real frames per utterance at ``probe_point`` for ``(batch,)`` real sample counts."""
        return self.frame_lengths_at(sample_lengths, probe_point or self.default_probe_point)

    def upstream_output(
        self,
        probes: dict,
        frame_lengths: torch.Tensor,
        output_hidden_states: bool,
        loss: Optional[torch.Tensor] = None,
        metrics: Optional[dict] = None,
    ) -> UpstreamOutput:
        """The end of every ``forward``: ``probes`` maps probe point → ``(batch, frames, dim)`` (at least the
        default one, and every one of ``config.probe_points`` when ``output_hidden_states``)."""
        hidden_states = tuple(probes[p] for p in self.config.probe_points) if output_hidden_states else None
        return UpstreamOutput(
            loss=loss,
            last_hidden_state=probes[self.config.default_probe_point],
            hidden_states=hidden_states,
            frame_lengths=frame_lengths,
            metrics=metrics,
        )

    def probe_dims(self) -> dict:
        raise NotImplementedError

    def probe_samples_per_frame(self) -> dict:
        raise NotImplementedError

    def frame_lengths_at(self, sample_lengths: torch.Tensor, probe_point: str) -> torch.Tensor:
        raise NotImplementedError
