"""A bidirectional LSTM over padded batches that never reads padding, without packed sequences.

PyTorch's CPU LSTM is fast on a padded tensor but slow to back-propagate through a packed batch of
unequal lengths (its backward zero-fills a full-size gradient per time step, which dominates at a few
hundred frames; docs/performance.md). Padding at the end never reaches a forward-running LSTM's real frames, so
only the backward direction needs care: it runs over each utterance reversed within its own length,
which is exactly what a packed bidirectional LSTM computes.
"""

from __future__ import annotations

import torch
from torch import nn


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` ``(batch, frames, dim)`` with each utterance's first ``lengths[b]`` frames reversed in place
    (padding frames stay where they are)."""
    frames = x.shape[1]
    t = torch.arange(frames, device=x.device)[None, :]  # (1, T)
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (B, T)
    return x.gather(1, index[:, :, None].expand_as(x))


class PaddedBiLSTM(nn.Module):
    """``num_layers`` bidirectional LSTM layers; ``forward(x, lengths)`` → ``(batch, frames, 2 * hidden)``.

    Equal to ``nn.LSTM(bidirectional=True)`` over a packed batch on every real frame; padded frames
    of the output are zero.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        for layer in range(num_layers):
            size = input_size if layer == 0 else 2 * hidden_size
            self.forward_layers.append(nn.LSTM(size, hidden_size, batch_first=True))
            self.backward_layers.append(nn.LSTM(size, hidden_size, batch_first=True))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]).unsqueeze(-1)
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i > 0:
                x = self.dropout(x)
            ahead, _ = fwd(x)  # (B, T, H): causal, so trailing padding never reaches real frames
            behind, _ = bwd(reverse_within_lengths(x, lengths))
            x = torch.cat([ahead, reverse_within_lengths(behind, lengths)], dim=-1) * mask  # (B, T, 2H)
        return x
