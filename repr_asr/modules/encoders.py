"""Padding-aware convolutional encoder of the WaveNet autoencoder (Chorowski et al. 2019, section IV-A).

Lengths travel with the sequences: every layer that changes the frame rate also returns the new
lengths, and activations at padded frames are zeroed after every layer, so the features of an
utterance's real frames never depend on what the padding contained.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .masking import mask_from_lengths


def downsampled_lengths(lengths: torch.Tensor, num_halvings: int) -> torch.Tensor:
    """Frames after ``num_halvings`` stride-2 convolutions padded to give ``ceil(frames / 2)`` each."""
    for _ in range(num_halvings):
        lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
    return lengths


class ConvEncoder(nn.Module):
    """Features ``(batch, frames, input_dim)`` at 100 Hz → ``(batch, frames / 2**num_halvings, hidden)``.

    The paper's stack: 2 convolutions of kernel 3 (the second residual; the first changes the width),
    ``num_halvings`` convolutions of kernel 4 and stride 2, 2 residual convolutions of kernel 3, then
    ``num_ff_layers`` residual ReLU feed-forward layers. All activations are ReLU.

    Each stride-2 convolution is padded (1 left, 2 right) so that ``T`` frames give ``ceil(T / 2)``:
    with the centred 10 ms front-end this is exactly one latent per ``160 * 2**num_halvings`` samples.
    """

    def __init__(self, input_dim: int, hidden_size: int, num_halvings: int = 1, num_ff_layers: int = 4):
        super().__init__()
        self.num_halvings = num_halvings
        self.pre = nn.ModuleList([nn.Conv1d(input_dim, hidden_size, 3, padding=1), nn.Conv1d(hidden_size, hidden_size, 3, padding=1)])
        self.down = nn.ModuleList([nn.Conv1d(hidden_size, hidden_size, 4, stride=2) for _ in range(num_halvings)])
        self.post = nn.ModuleList([nn.Conv1d(hidden_size, hidden_size, 3, padding=1) for _ in range(2)])
        self.ff = nn.ModuleList([nn.Linear(hidden_size, hidden_size) for _ in range(num_ff_layers)])
        self.input_dim = input_dim

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return downsampled_lengths(lengths, self.num_halvings)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features`` ``(batch, frames, input_dim)``, ``lengths`` ``(batch,)`` → ``(batch, frames', hidden)``, lengths'."""
        x = features.transpose(1, 2)  # (B, D, T)
        mask = mask_from_lengths(lengths, x.shape[-1]).unsqueeze(1).to(x.dtype)  # (B, 1, T)
        x = x * mask
        x = F.relu(self.pre[0](x)) * mask
        x = (x + F.relu(self.pre[1](x))) * mask
        for conv in self.down:
            x = F.relu(conv(F.pad(x, (1, 2))))  # (B, H, ceil(T/2))
            lengths = downsampled_lengths(lengths, 1)
            mask = mask_from_lengths(lengths, x.shape[-1]).unsqueeze(1).to(x.dtype)
            x = x * mask
        for conv in self.post:
            x = (x + F.relu(conv(x))) * mask
        x = x.transpose(1, 2)  # (B, T', H)
        for linear in self.ff:
            x = x + F.relu(linear(x))
        return x * mask.transpose(1, 2), lengths
