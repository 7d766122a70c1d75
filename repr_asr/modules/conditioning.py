"""The conditioning stack between the bottleneck and the WaveNet (Chorowski et al. 2019, section IV-A).

One convolution of kernel 3 mixes neighbouring latents (the paper's probe point pcond); an optional
learned speaker embedding is appended as a global condition. Upsampling to the sample rate (repeating
each frame ``samples_per_frame`` times) happens inside :class:`~repr_asr.modules.wavenet.WaveNet`,
which projects the condition at the frame rate first so the repeat costs nothing.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .masking import mask_from_lengths

AVERAGE_SPEAKER = -1  # a speaker id meaning "the mean of the training speakers' embeddings"


class ConditioningStack(nn.Module):
    """Latents ``(batch, frames, latent_dim)`` → condition ``(batch, frames, channels)`` (+ speaker)."""

    def __init__(self, latent_dim: int, channels: int = 128, kernel_size: int = 3, speakers: Optional[Sequence[str]] = None,
                 speaker_embedding_dim: int = 0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"conditioning kernel size must be odd (centred), got {kernel_size}")
        self.conv = nn.Conv1d(latent_dim, channels, kernel_size, padding=kernel_size // 2)
        self.channels = channels
        self.speakers = list(speakers or [])
        self.speaker_embedding = nn.Embedding(len(self.speakers), speaker_embedding_dim) if self.speakers and speaker_embedding_dim else None
        self.output_dim = channels + (speaker_embedding_dim if self.speaker_embedding is not None else 0)

    def mix(self, latents: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The pcond features: ``(batch, frames, latent_dim)`` → ``(batch, frames, channels)``, zero past each length."""
        mask = mask_from_lengths(lengths, latents.shape[1]).unsqueeze(-1).to(latents.dtype)  # (B, T, 1)
        mixed = self.conv((latents * mask).transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        return mixed * mask

    def with_speaker(self, mixed: torch.Tensor, speaker_ids: Optional[torch.Tensor]) -> torch.Tensor:
        """Append the speaker embedding to every frame: ``(batch, frames, channels)`` → ``(batch, frames, output_dim)``.
        A speaker id of :data:`AVERAGE_SPEAKER` (-1) takes the mean of the training speakers' embeddings: the
        voice to decode a speaker never seen in training with."""
        if self.speaker_embedding is None:
            return mixed
        if speaker_ids is None:
            raise ValueError("speaker_conditioning is on: pass speaker_ids (batch,) long indices into config.speakers")
        speaker_ids = torch.as_tensor(speaker_ids, device=mixed.device).long().view(-1)
        if speaker_ids.shape[0] != mixed.shape[0]:
            raise ValueError(f"speaker_ids has {speaker_ids.shape[0]} entries for a batch of {mixed.shape[0]}")
        bad = (speaker_ids < AVERAGE_SPEAKER) | (speaker_ids >= len(self.speakers))
        if bool(bad.any()):
            raise ValueError(
                f"speaker_ids {speaker_ids[bad].tolist()} out of range: config.speakers has {len(self.speakers)} entries "
                f"(-1: the average training speaker)"
            )
        table = torch.cat([self.speaker_embedding.weight, self.speaker_embedding.weight.mean(0, keepdim=True)])  # row -1: the mean
        emb = table[speaker_ids][:, None, :].expand(-1, mixed.shape[1], -1)  # (B, T, E)
        return torch.cat([mixed, emb.to(mixed.dtype)], dim=-1)
