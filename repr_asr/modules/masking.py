"""Lengths and masks of padded batches: every padding-aware module and model builds its masks here.

A padded batch carries ``(batch,)`` real lengths; a mask is ``(batch, max_len)`` boolean, True at real
positions.
"""

from __future__ import annotations

from typing import Optional

import torch


def lengths_from_mask(attention_mask: Optional[torch.Tensor], input_values: torch.Tensor) -> torch.Tensor:
    """``(batch,)`` real sample counts from an attention mask (all samples when there is none)."""
    if attention_mask is None:
        return torch.full((input_values.shape[0],), input_values.shape[-1], dtype=torch.long, device=input_values.device)
    return attention_mask.long().sum(-1)


def mask_from_lengths(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(batch, max_len)`` boolean mask, True at real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
