"""Masked reconstruction upstream (Mockingjay / TERA): a Transformer over log-mel frames that learns by
reconstructing the clean frames from a masked copy.

Pipeline (``B`` batch, ``T`` encoder frames, ``D = n_mels * downsample_rate``, ``H`` hidden size)::

    waveform (B, S) ─► log-mel (B, 1 + S // 160, n_mels), CMVN over real frames
                    ─► stack `downsample_rate` frames (B, T, D)
                    ─► [training only: time spans / frequency band / noise masking]
                    ─► linear + positions + LayerNorm ("input", (B, T, H))
                    ─► Transformer layers ("layer_1" ... "layer_N", (B, T, H))
                    ─► [training only: reconstruction head (B, T, D), L1 on masked positions]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import can_return_tuple

from ...audio import SpectralFrontEnd
from ...modules.distributed import global_count
from ...modules.masking import lengths_from_mask, mask_from_lengths
from ...modules.normalization import masked_cmvn
from ...modules.randomness import example_rand, example_randn
from ..upstream import UpstreamMixin, UpstreamOutput
from .configuration_masked_recon import MaskedReconConfig

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


@dataclass
class MaskedInputs:
    """What masking did to a batch of clean features ``(batch, frames, dim)``.

    Attributes:
        inputs: ``(batch, frames, dim)`` the corrupted encoder input.
        loss_mask: ``(batch, frames, dim)`` bool, True where the L1 loss is taken: every dim of a
            time-masked frame and the masked band of every real frame; never at padding.
        time_mask: ``(batch, frames)`` bool, time-masked frames.
        time_action: ``(batch, frames)`` long, per masked frame 0 = zeroed, 1 = random frame, 2 = kept;
            -1 elsewhere.
        band_mask: ``(batch, dim)`` bool, the zeroed frequency band of each utterance.
        noised: ``(batch,)`` bool, utterances that got Gaussian noise.
    """

    inputs: torch.Tensor
    loss_mask: torch.Tensor
    time_mask: torch.Tensor
    time_action: torch.Tensor
    band_mask: torch.Tensor
    noised: torch.Tensor


def sample_time_spans(frame_lengths: torch.Tensor, max_frames: int, proportion: float, span: int,
                      example_seeds: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Non-overlapping masked spans: ``(batch, max_frames)`` long, the span's index (0 .. n_spans - 1 over
    the batch) at masked frames and -1 elsewhere.

    Each utterance of ``L`` real frames gets ``n = min(round(L * proportion / span), L // span)`` spans,
    placed uniformly among all non-overlapping placements inside its real frames: choose ``n`` of the
    ``L - n * (span - 1)`` slots, then shift the k-th chosen slot right by ``k * (span - 1)``. Randomness
    comes from each example's seed (``example_seeds``, :mod:`repr_asr.modules.randomness`) or, without
    seeds, torch's global RNG (whose state a checkpoint holds).
    """
    device = frame_lengths.device
    batch = frame_lengths.shape[0]
    n_spans = torch.minimum(torch.round(frame_lengths.double() * proportion / span).long(), frame_lengths // span)
    free_slots = frame_lengths - n_spans * (span - 1)  # (B,) >= n_spans
    slots = torch.arange(max_frames, device=device)
    scores = example_rand(example_seeds, (batch, max_frames), "mask_spans", device=device).masked_fill(slots[None, :] >= free_slots[:, None], 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)  # (B, T) rank of each slot's score
    chosen = rank < n_spans[:, None]  # (B, T) the n lowest-scoring valid slots
    order = chosen.long().cumsum(1) - 1  # (B, T) k for the k-th chosen slot
    b_idx, slot_idx = chosen.nonzero(as_tuple=True)  # sorted by (batch, slot)
    starts = slot_idx + order[b_idx, slot_idx] * (span - 1)  # (n_total,)
    frames = starts[:, None] + torch.arange(span, device=device)  # (n_total, span)
    span_id = torch.full((batch, max_frames), -1, dtype=torch.long, device=device)
    span_id[b_idx[:, None].expand_as(frames), frames] = torch.arange(len(starts), device=device)[:, None].expand_as(frames)
    return span_id


def masked_l1(predicted: torch.Tensor, target: torch.Tensor, loss_mask: torch.Tensor, across_processes: bool = False) -> torch.Tensor:
    """Mean absolute error over the True entries of ``loss_mask`` (0 when there are none).

    ``across_processes``: divide by the count shared by every training process
    (:func:`repr_asr.modules.distributed.global_count`), so data-parallel gradients equal one process's."""
    mask = loss_mask.to(predicted.dtype)
    count = mask.sum()
    if across_processes:
        count = global_count(count)
    return ((predicted - target).abs() * mask).sum() / count.clamp(min=1.0)


def sinusoidal_positions(length: int, dim: int, device, dtype) -> torch.Tensor:
    """``(length, dim)`` Transformer sine/cosine positions, computed on the fly (nothing stored)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = position * inv_freq[None, :]  # (T, dim / 2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1).to(dtype)  # (T, dim) interleaved


class MaskedReconSelfAttention(nn.Module):
    def __init__(self, config: MaskedReconConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_dropout

    def forward(self, hidden: torch.Tensor, key_mask: Optional[torch.Tensor]) -> torch.Tensor:
        batch, frames, width = hidden.shape
        qkv = self.qkv(hidden).view(batch, frames, 3, self.num_heads, width // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, nh, T, hd)
        # key_mask (B, 1, 1, T): padded keys get no weight, so padding never reaches real frames.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).reshape(batch, frames, width))  # (B, T, H)


class MaskedReconLayer(nn.Module):
    """One Transformer layer, post-LN (BERT / Mockingjay) or pre-LN."""

    def __init__(self, config: MaskedReconConfig):
        super().__init__()
        self.pre_layer_norm = config.pre_layer_norm
        self.attention = MaskedReconSelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            ACTIVATIONS[config.hidden_act](),
            nn.Dropout(config.hidden_dropout),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.feed_forward_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden: torch.Tensor, key_mask: Optional[torch.Tensor]) -> torch.Tensor:
        if self.pre_layer_norm:
            hidden = hidden + self.dropout(self.attention(self.attention_norm(hidden), key_mask))
            return hidden + self.dropout(self.feed_forward(self.feed_forward_norm(hidden)))
        hidden = self.attention_norm(hidden + self.dropout(self.attention(hidden, key_mask)))
        return self.feed_forward_norm(hidden + self.dropout(self.feed_forward(hidden)))


class MaskedReconModel(UpstreamMixin, PreTrainedModel):
    """Mockingjay / TERA upstream: log-mel in, Transformer features out; masked L1 reconstruction loss.

    Features at inference (``compute_loss=False``) never see masking, in train or eval mode.
    ``speaker_ids`` are accepted (the pretraining collator passes them) and ignored.

    Example:
        >>> import torch
        >>> from repr_asr import MaskedReconConfig, MaskedReconModel
        >>> config = MaskedReconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...                            intermediate_size=64)
        >>> model = MaskedReconModel(config).eval()
        >>> out = model(torch.randn(2, 16000), output_hidden_states=True)
        >>> out.last_hidden_state.shape, len(out.hidden_states), config.probe_points
        (torch.Size([2, 101, 32]), 3, ['input', 'layer_1', 'layer_2'])
        >>> model.train()(torch.randn(2, 16000), compute_loss=True).loss.ndim
        0
    """

    config_class = MaskedReconConfig
    base_model_prefix = "masked_recon"
    main_input_name = "input_values"
    supports_gradient_checkpointing = False
    _supports_sdpa = True

    def __init__(self, config: MaskedReconConfig):
        super().__init__(config)
        self.front_end = SpectralFrontEnd("fbank", config.sampling_rate, config.n_mels)
        self.input_projection = nn.Linear(config.input_dim, config.hidden_size)
        self.position_embedding = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size)
            if config.position_embedding == "learned" else None
        )
        self.input_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.input_dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(MaskedReconLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.pre_layer_norm else None
        if config.reconstruction_head == "mlp":
            self.reconstruction_head = nn.Sequential(
                nn.Linear(config.hidden_size, config.hidden_size),
                ACTIVATIONS[config.hidden_act](),
                nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps),
                nn.Linear(config.hidden_size, config.input_dim),
            )
        else:
            self.reconstruction_head = nn.Linear(config.hidden_size, config.input_dim)
        self.post_init()

    # ---- the upstream contract -------------------------------------------------------------------

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def probe_dims(self) -> dict:
        return {name: self.config.hidden_size for name in self.config.probe_points}

    def probe_samples_per_frame(self) -> dict:
        hop = self.front_end.hop_length * self.config.downsample_rate
        return {name: hop for name in self.config.probe_points}

    def frame_lengths_at(self, sample_lengths: torch.Tensor, probe_point: str) -> torch.Tensor:
        self.check_probe_point(probe_point)
        mel_frames = self.front_end.frame_lengths(sample_lengths)
        # A partial group of frames at the end still makes an encoder frame (its padding stays zero).
        return torch.div(mel_frames + self.config.downsample_rate - 1, self.config.downsample_rate, rounding_mode="floor")

    # ---- pieces of the forward pass (public so tests and analyses can take them apart) -----------

    def log_mel(self, input_values: torch.Tensor, attention_mask: Optional[torch.Tensor] = None):
        """Clean encoder input and its lengths: ``(batch, frames, n_mels * downsample_rate)`` float32,
        normalised per utterance over its real frames and zero at padding, and ``(batch,)`` frame lengths.

        The shared front-end pads its windows with zeros, so once the padding is zeroed a padded batch
        gives every utterance exactly its lone features, whatever the padding held.
        """
        if input_values.ndim != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}")
        sample_lengths = lengths_from_mask(attention_mask, input_values)
        features, mel_lengths = self.front_end.padded_batch(input_values, sample_lengths)  # (B, T_mel, n_mels)
        features = masked_cmvn(features, mel_lengths)  # zero at padding
        rate = self.config.downsample_rate
        if rate > 1:
            batch, frames, dim = features.shape
            features = F.pad(features, (0, 0, 0, (-frames) % rate))  # (B, ceil(T/rate) * rate, n_mels)
            features = features.reshape(batch, -1, rate * dim)  # (B, ceil(T/rate), rate * n_mels)
        return features, self.frame_lengths_at(sample_lengths, self.config.default_probe_point)

    def mask_features(self, features: torch.Tensor, frame_lengths: torch.Tensor,
                      example_seeds: Optional[torch.Tensor] = None) -> MaskedInputs:
        """Corrupt clean features ``(batch, frames, dim)`` for training; padding is never touched.

        Time: non-overlapping spans of ``mask_span`` frames covering ``mask_proportion`` of the real
        frames; each span independently is zeroed (``mask_zero_prob``), replaced by real frames drawn at
        random from the same utterance (``mask_random_prob``) or kept. s3prl draws this choice once per
        utterance; per span gives the same 80/10/10 expectation with less variance per batch.
        Frequency (TERA): one band of ``0 .. floor(freq_mask_proportion * n_mels)`` mel bands, zeroed on
        every real frame (and in every stacked sub-frame when ``downsample_rate > 1``).
        Noise (TERA): with probability ``noise_proportion`` an utterance gets N(0, noise_std²) added to
        its real frames; noise alone adds no loss positions.
        Every draw comes from the example's seed (``example_seeds`` ``(batch,)``), or torch's global RNG
        when None.
        """
        config = self.config
        batch, frames, dim = features.shape
        device = features.device
        real = mask_from_lengths(frame_lengths, frames)  # (B, T)
        inputs = features.clone()

        seeds = example_seeds
        span_id = sample_time_spans(frame_lengths, frames, config.mask_proportion, config.mask_span, seeds)  # (B, T)
        time_mask = span_id >= 0
        # One draw per span, from its example's stream: span ids count over the batch, so take the
        # span's index within its example (its id minus the example's first id).
        n_spans = time_mask.sum(1) // config.mask_span  # (B,)
        first_id = n_spans.cumsum(0) - n_spans  # (B,)
        local_id = (span_id - first_id[:, None]).clamp(min=0)  # (B, T)
        draw = example_rand(seeds, (batch, max(frames, 1)), "mask_action", device=device).gather(1, local_id)  # (B, T)
        span_action = (draw >= config.mask_zero_prob).long() + (draw >= config.mask_zero_prob + config.mask_random_prob).long()
        time_action = torch.where(time_mask, span_action, torch.full_like(span_id, -1))
        # Random real frames of the same utterance for the "random" spans.
        random_index = (example_rand(seeds, (batch, frames), "mask_random_frames", device=device) * frame_lengths[:, None]).long()  # (B, T)
        random_frames = torch.gather(features, 1, random_index[..., None].expand(-1, -1, dim))  # (B, T, D)
        inputs = torch.where((time_action == 1)[..., None], random_frames, inputs)
        inputs = inputs.masked_fill((time_action == 0)[..., None], 0.0)

        band_mask = torch.zeros(batch, dim, dtype=torch.bool, device=device)
        max_width = int(config.freq_mask_proportion * config.n_mels)
        if max_width > 0:
            band_draw = example_rand(seeds, (batch, 2), "mask_band", device=device)  # (B, 2)
            widths = (band_draw[:, 0] * (max_width + 1)).long()  # (B,) uniform 0..max_width
            starts = (band_draw[:, 1] * (config.n_mels - widths + 1)).long()  # (B,)
            bands = torch.arange(config.n_mels, device=device)
            mel_band = (bands >= starts[:, None]) & (bands < (starts + widths)[:, None])  # (B, n_mels)
            band_mask = mel_band.repeat(1, config.downsample_rate)  # (B, D): same band in each stacked frame
            inputs = inputs.masked_fill(band_mask[:, None, :] & real[..., None], 0.0)

        noised = torch.zeros(batch, dtype=torch.bool, device=device)
        if config.noise_proportion > 0 and config.noise_std > 0:
            noised = example_rand(seeds, (batch, 1), "mask_noised", device=device)[:, 0] < config.noise_proportion
            noise = example_randn(seeds, inputs.shape, "mask_noise", device=device, dtype=inputs.dtype) * config.noise_std
            inputs = inputs + noise * (noised[:, None, None] & real[..., None]).to(inputs.dtype)

        loss_mask = (time_mask[..., None] | band_mask[:, None, :]) & real[..., None]  # (B, T, D)
        return MaskedInputs(inputs, loss_mask, time_mask, time_action, band_mask, noised)

    def encode(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> list:
        """Encoder states at every probe-able point: ``[input, layer_1, ..., layer_N]``, each
        ``(batch, frames, hidden_size)`` and zero at padded frames."""
        batch, frames, _ = features.shape
        real = mask_from_lengths(frame_lengths, frames)  # (B, T)
        hidden = self.input_projection(features.to(self.input_projection.weight.dtype))  # (B, T, H)
        if self.position_embedding is None:
            hidden = hidden + sinusoidal_positions(frames, hidden.shape[-1], hidden.device, hidden.dtype)[None]
        else:
            if frames > self.config.max_position_embeddings:
                raise ValueError(
                    f"input has {frames} encoder frames, more than MaskedReconConfig.max_position_embeddings "
                    f"({self.config.max_position_embeddings}) of the learned position embedding"
                )
            hidden = hidden + self.position_embedding.weight[:frames][None]
        hidden = self.input_dropout(self.input_norm(hidden))
        # No mask when nothing is padded: the same numbers, and SDPA may take a faster kernel.
        key_mask = None if bool(real.all()) else real[:, None, None, :]  # (B, 1, 1, T)
        keep = real[..., None].to(hidden.dtype)  # (B, T, 1)
        states = [hidden * keep]
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden, key_mask)
            out = self.final_norm(hidden) if self.final_norm is not None and index == len(self.layers) - 1 else hidden
            states.append(out * keep)
        return states

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
        compute_loss: bool = False,
        speaker_ids: Optional[torch.Tensor] = None,
        example_seeds: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> UpstreamOutput:
        """``input_values`` ``(batch, samples)`` at 16 kHz, ``attention_mask`` ``(batch, samples)`` (1 = real),
        ``example_seeds`` ``(batch,)`` long seeds of each example's masking (global RNG when None).

        With ``compute_loss=True`` the input is masked (see ``mask_features``) and the output carries the
        L1 reconstruction ``loss`` and ``metrics``; the hidden states are then those of the masked input.
        """
        clean, frame_lengths = self.log_mel(input_values, attention_mask)  # (B, T, D), (B,)
        masked = self.mask_features(clean, frame_lengths, example_seeds) if compute_loss else None
        states = self.encode(masked.inputs if compute_loss else clean, frame_lengths)
        names = ["input"] + [f"layer_{i}" for i in range(1, self.config.num_hidden_layers + 1)]
        probes = dict(zip(names, states))
        loss = metrics = None
        if compute_loss:
            predicted = self.reconstruction_head(states[-1]).float()  # (B, T, D), loss in float32
            loss = masked_l1(predicted, clean, masked.loss_mask, across_processes=True)
            with torch.no_grad():
                real = mask_from_lengths(frame_lengths, clean.shape[1])  # (B, T)
                real_positions = real[..., None].expand_as(masked.loss_mask)
                n_real = real.sum().clamp(min=1)
                metrics = {
                    "l1_masked": loss.detach(),
                    "l1_unmasked": masked_l1(predicted, clean, real_positions & ~masked.loss_mask),
                    "time_mask_fraction": masked.time_mask.sum() / n_real,
                    "freq_mask_fraction": masked.band_mask.float().mean(),
                    "loss_position_fraction": masked.loss_mask.sum() / real_positions.sum().clamp(min=1),
                    "noised_fraction": masked.noised.float().mean(),
                }
        return self.upstream_output(probes, frame_lengths, output_hidden_states, loss, metrics)
