"""Per-utterance feature normalisation over real frames only, so padding never shifts the statistics."""

from __future__ import annotations

import torch

from .masking import mask_from_lengths


def masked_cmvn(features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Normalise ``(batch, frames, dim)`` to zero mean and unit variance over each utterance's real frames
    (``frame_lengths`` ``(batch,)``); padded frames come out zero."""
    mask = mask_from_lengths(frame_lengths, features.shape[1]).unsqueeze(-1).to(features.dtype)  # (B, T, 1)
    count = mask.sum(1, keepdim=True).clamp(min=1.0)
    mean = (features * mask).sum(1, keepdim=True) / count
    var = (((features - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (features - mean) / torch.sqrt(var + 1e-5) * mask
