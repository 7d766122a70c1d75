"""Sparse emission of latents by non-max suppression (Chorowski et al. 2019, arXiv:1901.08810, section V-D).

The paper extracts latents at a higher rate but lets only a fraction of them through (e.g. at 25 Hz,
only ¼ non-zero) to encourage a segmentation of the signal; DistSup implements the same idea as a top-k
emission bottleneck.
"""

from __future__ import annotations

import torch


def sparse_emission(latents: torch.Tensor, window: int, keep: int) -> torch.Tensor:
    """In each non-overlapping window of ``window`` frames keep the ``keep`` frames of largest L2 norm
    and zero the others.

    ``latents`` ``(batch, frames, dim)`` → same shape; gradients flow through the kept frames. A final
    partial window keeps at most ``keep`` of its frames. ``window <= 1`` or ``keep >= window`` is a no-op.
    """
    if window <= 1 or keep >= window:
        return latents
    batch, frames, dim = latents.shape
    pad = (-frames) % window
    norms = latents.detach().norm(dim=-1)  # (B, T)
    # Padding frames get -inf norm so they are never kept in a partial window.
    norms = torch.nn.functional.pad(norms, (0, pad), value=float("-inf")).view(batch, -1, window)  # (B, W, window)
    top = norms.topk(keep, dim=-1).indices  # (B, W, keep)
    keep_mask = torch.zeros_like(norms, dtype=torch.bool).scatter_(-1, top, True)
    keep_mask = keep_mask.view(batch, -1)[:, :frames]  # (B, T)
    return latents * keep_mask.unsqueeze(-1).to(latents.dtype)
