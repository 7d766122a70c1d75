"""Bottlenecks of the WaveNet autoencoder (Chorowski et al. 2019, section III-B): none, VAE, VQ-VAE.

Every bottleneck maps ``(batch, frames, in_dim)`` and a ``(batch, frames)`` mask of real frames to a
:class:`BottleneckOutput`. Statistics (KL, code usage, losses) are computed over real frames only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init

from .distributed import all_reduce_sum, gather_rows, world_size
from .randomness import example_randn


@dataclass
class BottleneckOutput:
    """latents: ``(batch, frames, dim)`` what the decoder sees; loss: scalar regulariser (already
    weighted, in the unit documented by the bottleneck); codes: ``(batch, frames)`` code indices (VQ);
    metrics: scalar tensors to log; bits_per_frame: information estimate per real frame."""

    latents: torch.Tensor
    loss: Optional[torch.Tensor] = None
    codes: Optional[torch.Tensor] = None
    metrics: dict = field(default_factory=dict)
    bits_per_frame: Optional[torch.Tensor] = None


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(batch, frames, ...)`` values over real frames (and trailing dims)."""
    mask = mask.to(values.dtype).view(*mask.shape, *([1] * (values.dim() - mask.dim())))
    per_frame = values[0, 0].numel() if values.dim() > 2 else 1
    return (values * mask).sum() / (mask.sum() * per_frame).clamp(min=1.0)


class IdentityBottleneck(nn.Module):
    """Dimensionality reduction only: the projection's output goes through unchanged.

    Its bitrate is reported as ``dim * 32`` bits per frame (float32 values), the talk's upper bound.
    """

    def __init__(self, dim: int, bits_per_dim: float = 32.0):
        super().__init__()
        self.dim = dim
        self.bits_per_dim = bits_per_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor, example_seeds: Optional[torch.Tensor] = None) -> BottleneckOutput:
        return BottleneckOutput(latents=x, bits_per_frame=x.new_tensor(self.dim * self.bits_per_dim))


class GaussianBottleneck(nn.Module):
    """VAE bottleneck: a diagonal Gaussian posterior with a KL penalty to N(0, I) (Kingma & Welling 2014,
    https://arxiv.org/abs/1312.6114).

    Input ``(batch, frames, 2 * dim)`` holds the mean and log-variance. In training the latent is a
    reparameterised sample, in eval the mean. ``loss`` is the KL in nats *per frame* (summed over
    dims, averaged over real frames); the model rescales it to nats per sample.

    Tricks against posterior collapse, as named flags:
    - ``free_bits`` (nats per dimension per frame, 0 = off): "free bits" of Kingma et al. 2016
      (https://arxiv.org/abs/1606.04934, eq. 15): each dimension's batch-averaged KL is clamped from
      below, so the encoder is not pushed below that much information per dimension.
    - the KL weight warm-up is the model's job (``kl_weight`` schedule; Bowman et al. 2016,
      https://arxiv.org/abs/1511.06349).
    """

    def __init__(self, dim: int, free_bits: float = 0.0):
        super().__init__()
        self.dim = dim
        self.free_bits = free_bits

    def forward(self, params: torch.Tensor, mask: torch.Tensor, example_seeds: Optional[torch.Tensor] = None) -> BottleneckOutput:
        """``example_seeds`` ``(batch,)``: each example's noise from its own seed (global RNG if None)."""
        mean, logvar = params.float().chunk(2, dim=-1)  # (B, T, D) each
        logvar = logvar.clamp(-30.0, 20.0)
        if self.training:
            noise = example_randn(example_seeds, mean.shape, "vae", device=mean.device)  # (B, T, D)
            latents = mean + noise * torch.exp(0.5 * logvar)
        else:
            latents = mean
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)  # (B, T, D), >= 0
        m = mask.to(kl.dtype).unsqueeze(-1)
        frames = m.sum().clamp(min=1.0)
        kl_per_dim = (kl * m).sum((0, 1)) / frames  # (D,) nats per frame
        kl_total = kl_per_dim.sum()
        loss = kl_per_dim.clamp(min=self.free_bits).sum() if self.free_bits > 0 else kl_total
        return BottleneckOutput(
            latents=latents.to(params.dtype),
            loss=loss,
            metrics={"kl": kl_total.detach()},
            bits_per_frame=kl_total.detach() / math.log(2.0),
        )


class VectorQuantizer(nn.Module):
    """VQ-VAE bottleneck (van den Oord et al. 2017, https://arxiv.org/abs/1711.00937).

    Each frame is replaced by its nearest codebook entry (Euclidean); gradients pass to the encoder by
    the straight-through estimator. ``loss`` = ``commitment_cost * ||z - sg(e)||^2`` (+ the codebook term
    ``||sg(z) - e||^2`` unless EMA updates are on), each a mean over real frames and dimensions, added
    as is to the per-sample reconstruction NLL.

    Tricks against codebook collapse, as named flags:
    - ``use_ema`` / ``ema_decay``: codebook entries are exponential moving averages of the frames
      assigned to them instead of learned by the codebook loss (van den Oord et al. 2017, appendix A.1;
      Razavi et al. 2019, https://arxiv.org/abs/1906.00446). Laplace-smoothed cluster sizes.
    - ``dead_code_threshold`` (expected assignments per batch, 0 = off): codes whose bias-corrected
      moving average of batch assignments falls below it are re-initialised from recent encoder
      outputs by :meth:`revive_dead_codes` (Dhariwal et al. 2020, Jukebox, https://arxiv.org/abs/2005.00341;
      Zeghidour et al. 2021, SoundStream, https://arxiv.org/abs/2107.03312).
    - ``kmeans_init``: the codebook is set by a few k-means iterations on the first training batch
      (SoundStream, section 3.3; Łańcucki et al. 2020, https://arxiv.org/abs/2005.08520).

    Every piece of training state is a buffer, so checkpoints hold all of it and a resumed run is
    exact: EMA sums, usage, the k-means flag, the recent encoder outputs that revival draws from
    (``recent``, ``recent_count``) and the seed of the quantizer's own random draws (``rng_seed``; those
    draws are seeded by it and the step, never by the global RNG). With several training processes the
    statistics are summed and the recent outputs gathered over processes
    (:mod:`repr_asr.modules.distributed`), so every process holds what one process on the whole batch
    would. We keep this quantizer rather than adopt ``vector-quantize-pytorch`` because its state is
    what the paper's ablations need (usage-based revival with a grace period, k-means on the first
    batch, per-frame masks) and these properties are tested here.
    """

    def __init__(self, codebook_size: int, dim: int, commitment_cost: float = 0.25, use_ema: bool = False,
                 ema_decay: float = 0.99, dead_code_threshold: float = 0.0, kmeans_init: bool = False,
                 kmeans_iters: int = 10, epsilon: float = 1e-5, recent_size: int = 4096):
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.commitment_cost = commitment_cost
        self.use_ema = use_ema
        self.ema_decay = ema_decay
        self.dead_code_threshold = dead_code_threshold
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.epsilon = epsilon
        self.recent_size = recent_size
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim), requires_grad=not use_ema)
        # EMA state (only used with use_ema), usage statistics for dead codes, k-means flag: all saved.
        self.register_buffer("ema_cluster_size", torch.ones(codebook_size))
        self.register_buffer("ema_embed_sum", torch.zeros(codebook_size, dim))
        self.register_buffer("usage", torch.zeros(codebook_size))
        self.register_buffer("usage_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        # Recent encoder outputs for revival: the first `recent_count` rows are valid. Only kept when
        # revival is on (an empty buffer otherwise).
        self.register_buffer("recent", torch.zeros(recent_size if dead_code_threshold > 0 else 0, dim))
        self.register_buffer("recent_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("rng_seed", torch.randint(0, 2**62, (), dtype=torch.long))

    def init_state(self) -> None:
        """The initial state (the model's ``_init_weights`` calls this): N(0, 1/dim) codebook entries
        (norm ≈ 1), EMA sums consistent with them, no statistics, a fresh seed for the quantizer's own draws.

        ``transformers.initialization`` leaves alone what ``from_pretrained`` has already loaded.
        """
        init.normal_(self.codebook, 0.0, 1.0 / math.sqrt(self.dim))
        init.copy_(self.ema_embed_sum, self.codebook)
        init.ones_(self.ema_cluster_size)
        init.zeros_(self.usage)
        init.zeros_(self.usage_steps)
        init.constant_(self.initialized, not self.kmeans_init)
        init.zeros_(self.recent)
        init.zeros_(self.recent_count)
        # The quantizer's own random draws (k-means picks, revival) are seeded by this and the step.
        init.constant_(self.rng_seed, int(torch.randint(0, 2**62, ())))

    def _generator(self, purpose: int) -> torch.Generator:
        """A CPU generator for this step's draws: a function of (``rng_seed``, ``usage_steps``, purpose)."""
        return torch.Generator().manual_seed((int(self.rng_seed) * 1_000_003 + int(self.usage_steps) * 4 + purpose) % 2**63)

    def quantize(self, flat: torch.Tensor) -> torch.Tensor:
        """Nearest code index for each row of ``flat`` ``(N, dim)`` → ``(N,)``."""
        codebook = self.codebook.float()
        # ||z||^2 is constant per row and does not change the argmin.
        distances = codebook.pow(2).sum(1)[None, :] - 2.0 * flat.float() @ codebook.t()  # (N, K)
        return distances.argmin(dim=1)

    @torch.no_grad()
    def _kmeans(self, data: torch.Tensor) -> None:
        k = self.codebook_size
        data = data.float()
        generator = self._generator(0)
        if data.shape[0] < k:
            pick = torch.randint(0, data.shape[0], (k,), generator=generator)
        else:
            pick = torch.randperm(data.shape[0], generator=generator)[:k]
        centres = data[pick.to(data.device)].clone()
        for _ in range(self.kmeans_iters):
            assign = (centres.pow(2).sum(1)[None] - 2 * data @ centres.t()).argmin(1)
            counts = torch.bincount(assign, minlength=k).to(data.dtype)
            sums = torch.zeros_like(centres).index_add_(0, assign, data)
            used = counts > 0
            centres[used] = sums[used] / counts[used, None]
        self.codebook.copy_(centres)
        self.ema_embed_sum.copy_(centres)
        self.ema_cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    def forward(self, z: torch.Tensor, mask: torch.Tensor, example_seeds: Optional[torch.Tensor] = None) -> BottleneckOutput:
        """``z`` ``(batch, frames, dim)``, ``mask`` ``(batch, frames)`` bool → quantised latents and codes.
        (``example_seeds`` is accepted for a common bottleneck signature; quantisation draws nothing per example.)"""
        batch, frames, dim = z.shape
        flat = z.reshape(-1, dim)  # (B*T, D)
        real = mask.reshape(-1)
        real_rows = flat[real].detach().float()  # (N, D)
        # A non-finite batch must not reach the codebook or its statistics (the trainer skips its step).
        # Decided over every process, so that all of them take the same branch.
        finite = all_reduce_sum(torch.isfinite(real_rows).all().float().reshape(1)) == world_size() if self.training else None
        if self.training and self.kmeans_init and not bool(self.initialized) and bool(finite):
            rows = gather_rows(real_rows)
            if rows.shape[0] > 0:
                self._kmeans(rows)
        codes = self.quantize(flat.detach())  # (B*T,)
        quantized = F.embedding(codes, self.codebook).view(batch, frames, dim)  # (B, T, D)
        real_codes = codes[real]
        counts = torch.bincount(real_codes, minlength=self.codebook_size).float()  # (K,)

        if self.training and bool(finite):
            counts = self._update_statistics(real_rows, real_codes, counts)

        zf, qf = z.float(), quantized.float()
        commit = _masked_mean((zf - qf.detach()).pow(2), mask)
        loss = self.commitment_cost * commit
        metrics = {"vq_commit": commit.detach()}
        if not self.use_ema:
            codebook_loss = _masked_mean((zf.detach() - qf).pow(2), mask)
            loss = loss + codebook_loss
            metrics["vq_codebook"] = codebook_loss.detach()
        probs = counts / counts.sum().clamp(min=1.0)
        entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
        metrics["codebook_perplexity"] = entropy.exp()
        metrics["codebook_usage"] = (counts > 0).float().mean()
        # Straight-through estimator: forward the code, backward the identity to z.
        latents = z + (quantized.to(z.dtype) - z).detach()
        return BottleneckOutput(
            latents=latents, loss=loss, codes=codes.view(batch, frames), metrics=metrics,
            bits_per_frame=z.new_tensor(math.log2(self.codebook_size)),
        )

    @torch.no_grad()
    def _update_statistics(self, rows: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Update usage, EMA and recent outputs from this batch (summed over processes); returns the
        batch's code counts over every process."""
        decay = self.ema_decay
        counts = all_reduce_sum(counts.clone())
        self.usage.mul_(decay).add_(counts, alpha=1 - decay)
        if self.dead_code_threshold > 0:
            everyone = gather_rows(rows)
            if everyone.shape[0] > 0:
                keep = everyone
                if everyone.shape[0] > self.recent_size:
                    pick = torch.randperm(everyone.shape[0], generator=self._generator(1))[: self.recent_size]
                    keep = everyone[pick.to(everyone.device)]
                self.recent[: keep.shape[0]] = keep.to(self.recent.dtype)
                self.recent_count.fill_(keep.shape[0])
        if self.use_ema:
            sums = torch.zeros(self.codebook_size, self.dim, device=rows.device).index_add_(0, codes, rows)
            sums = all_reduce_sum(sums)
            if counts.sum() > 0:
                self.ema_cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
                self.ema_embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
                n = self.ema_cluster_size.sum()
                # Laplace smoothing keeps rarely used codes from dividing by ~0.
                size = (self.ema_cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
                self.codebook.data.copy_(self.ema_embed_sum / size[:, None])
        self.usage_steps.add_(1)
        return counts

    def average_usage(self) -> torch.Tensor:
        """``(K,)`` bias-corrected moving average of assignments per training batch."""
        steps = int(self.usage_steps)
        if steps == 0:
            return torch.full_like(self.usage, float("inf"))
        return self.usage / (1.0 - self.ema_decay ** steps)

    @torch.no_grad()
    def revive_dead_codes(self) -> int:
        """Re-initialise codes used less than ``dead_code_threshold`` times per batch (on average) with
        randomly chosen recent encoder outputs. Returns how many codes were revived.

        Deterministic given the buffers (the draw is seeded by ``rng_seed`` and the step), so every
        process revives the same codes with the same rows."""
        count = int(self.recent_count)
        if self.dead_code_threshold <= 0 or count == 0:
            return 0
        usage = self.average_usage()
        dead = (usage < self.dead_code_threshold).nonzero().squeeze(1)
        if dead.numel() == 0:
            return 0
        recent = self.recent[:count]
        pick = torch.randint(0, count, (dead.numel(),), generator=self._generator(2))
        new = recent[pick.to(recent.device)]
        self.codebook.data[dead] = new.to(self.codebook.dtype)
        # Give revived codes a grace period of one average batch share before they can die again.
        share = float(count) / self.codebook_size
        self.ema_cluster_size[dead] = 1.0
        self.ema_embed_sum[dead] = new.to(self.ema_embed_sum.dtype)
        bias = 1.0 - self.ema_decay ** int(self.usage_steps)
        self.usage[dead] = max(share, self.dead_code_threshold) * bias
        return int(dead.numel())
