"""Randomized time jitter (Chorowski et al. 2019, arXiv:1901.08810, section III-C).

During training each latent frame is replaced by one of its neighbours, so the decoder cannot rely on
the exact position of a latent and the encoder is pushed towards slowly varying, segment-like codes
(a regulariser used instead of a slowness penalty).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .randomness import example_rand


class TimeJitter(nn.Module):
    """Replace latent ``t`` by latent ``t-1`` with probability ``p/2`` and by ``t+1`` with probability ``p/2``.

    ``probability`` is the *total* replacement probability per frame (the paper's 0.12); public
    reimplementations disagree whether 0.12 is total or per side — we take it as the total, split evenly.
    Neighbours are clamped to each utterance's real frames (frame 0 has no left neighbour, the last
    real frame no right one: they stay in place). Identity in eval mode.
    """

    def __init__(self, probability: float = 0.12):
        super().__init__()
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"jitter probability must be in [0, 1], got {probability}")
        self.probability = probability

    def forward(self, latents: torch.Tensor, lengths: torch.Tensor, example_seeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``latents`` ``(batch, frames, dim)``, ``lengths`` ``(batch,)`` real frames → same shape.
        ``example_seeds`` ``(batch,)``: draw each example's jitter from its own seed (global RNG if None)."""
        if not self.training or self.probability == 0.0:
            return latents
        batch, frames, dim = latents.shape
        u = example_rand(example_seeds, (batch, frames), "jitter", device=latents.device)
        shift = (u < self.probability / 2).long() * -1 + ((u >= self.probability / 2) & (u < self.probability)).long()
        last = (lengths - 1).clamp(min=0)[:, None]  # (B, 1)
        index = torch.arange(frames, device=latents.device)[None, :] + shift  # (B, T)
        index = torch.minimum(index.clamp(min=0), last.expand(batch, frames))
        # Padded frames keep their own position (they are masked downstream anyway).
        real = torch.arange(frames, device=latents.device)[None, :] <= last
        index = torch.where(real, index, torch.arange(frames, device=latents.device)[None, :])
        return latents.gather(1, index.unsqueeze(-1).expand(batch, frames, dim))
