"""The WaveNet autoencoder of Chorowski, Weiss, Bengio & van den Oord (2019, arXiv:1901.08810).

waveform ──front-end──► MFCC / fbank / frames (100 Hz, per-utterance CMVN)
         ──ConvEncoder──► "enc" (latent rate) ──Linear──► "proj" ──bottleneck (none|vae|vq)──►
         sparse emission ──► "bn" ──jitter (training)──► conv k=3 ──► "cond" (+ speaker)
         ──WaveNet (teacher forcing on the previous mu-law sample)──► 256-way softmax per sample.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import can_return_tuple

from ...audio import SpectralFrontEnd, mu_law_decode, mu_law_encode
from ...modules import (
    ConditioningStack,
    ConvEncoder,
    GaussianBottleneck,
    IdentityBottleneck,
    TimeJitter,
    VectorQuantizer,
    WaveNet,
    sparse_emission,
)
from ...modules.distributed import global_count
from ...modules.masking import lengths_from_mask, mask_from_lengths
from ...modules.normalization import masked_cmvn
from ..upstream import UpstreamMixin, UpstreamOutput
from .configuration_wavenet_ae import WaveNetAEConfig


class WaveNetAEModel(UpstreamMixin, PreTrainedModel):
    """WaveNet autoencoder upstream: features at four probe points, and the pretraining loss.

    ``forward(input_values, attention_mask, speaker_ids, output_hidden_states, compute_loss)`` returns an
    :class:`~repr_asr.models.upstream.UpstreamOutput`. Without ``compute_loss`` only the encoder side runs.
    With it, ``loss`` = reconstruction NLL (mean nats per real sample) + the bottleneck's term: the
    VAE's KL (weighted by the warm-up schedule, converted to nats per sample) or the VQ's commitment
    (+ codebook) terms (means over latent frames and dimensions, as in VQ-VAE reimplementations).

    Example:
        >>> import torch
        >>> from repr_asr import WaveNetAEConfig, WaveNetAEModel
        >>> config = WaveNetAEConfig(encoder_hidden_size=32, latent_dim=8, codebook_size=16, decoder_layers=4,
        ...                          residual_channels=16, gate_channels=16, skip_channels=16, decoder_output_channels=32)
        >>> model = WaveNetAEModel(config)
        >>> out = model(torch.zeros(2, 16000), output_hidden_states=True)
        >>> tuple(out.last_hidden_state.shape), [h.shape[-1] for h in out.hidden_states]
        ((2, 51, 8), [32, 8, 8, 128])
    """

    config_class = WaveNetAEConfig
    base_model_prefix = "wavenet_ae"
    main_input_name = "input_values"

    def __init__(self, config: WaveNetAEConfig):
        super().__init__(config)
        self.front_end = SpectralFrontEnd(config.input_features, config.sampling_rate, config.n_mels, config.n_mfcc)
        halvings = int(math.log2(config.encoder_downsampling))
        self.encoder = ConvEncoder(self.front_end.dim, config.encoder_hidden_size, halvings, config.encoder_num_ff_layers)
        proj_dim = 2 * config.latent_dim if config.bottleneck == "vae" else config.latent_dim
        self.projection = nn.Linear(config.encoder_hidden_size, proj_dim)
        if config.bottleneck == "vq":
            self.bottleneck = VectorQuantizer(
                config.codebook_size, config.latent_dim, config.vq_commitment_cost, config.vq_ema,
                config.vq_ema_decay, config.vq_dead_code_threshold, config.vq_kmeans_init,
            )
        elif config.bottleneck == "vae":
            self.bottleneck = GaussianBottleneck(config.latent_dim, config.kl_free_bits)
        else:
            self.bottleneck = IdentityBottleneck(config.latent_dim)
        self.jitter = TimeJitter(config.jitter_prob)
        self.conditioning = ConditioningStack(
            config.latent_dim, config.conditioning_channels, config.conditioning_kernel_size,
            config.speakers if config.speaker_conditioning else None, config.speaker_embedding_dim,
        )
        self.decoder = WaveNet(
            config.quantization_channels, config.residual_channels, config.gate_channels, config.skip_channels,
            config.decoder_output_channels, config.dilations, self.conditioning.output_dim,
        )
        self._step = 0
        self.post_init()

    # ------------------------------------------------------------------------------------------
    # The upstream interface

    @property
    def samples_per_latent(self) -> int:
        return self.config.samples_per_latent

    @property
    def hidden_size(self) -> int:
        return self.probe_dims()[self.config.default_probe_point]

    def probe_dims(self) -> dict:
        c = self.config
        dims = {
            "enc": c.encoder_hidden_size,
            "proj": self.projection.out_features,
            "bn": c.latent_dim,
            "cond": c.conditioning_channels,
        }
        return {p: dims[p] for p in c.probe_points}

    def probe_samples_per_frame(self) -> dict:
        # Every probe point is at the latent rate (the encoder output included).
        return {p: self.samples_per_latent for p in self.config.probe_points}

    def frame_lengths_at(self, sample_lengths: torch.Tensor, probe_point: str) -> torch.Tensor:
        self.check_probe_point(probe_point)
        return self.encoder.output_lengths(self.front_end.frame_lengths(sample_lengths))

    def on_train_step(self, step: int) -> dict:
        """Called by the trainer before each optimisation step: sets the KL schedule's step and revives
        dead VQ codes. Returns scalars worth logging."""
        self._step = int(step)
        logs = {}
        if isinstance(self.bottleneck, VectorQuantizer) and self.config.vq_dead_code_threshold > 0:
            logs["vq_revived_codes"] = float(self.bottleneck.revive_dead_codes())
        if isinstance(self.bottleneck, GaussianBottleneck):
            logs["kl_weight"] = self.kl_weight_at(self._step)
        return logs

    def kl_weight_at(self, step: int) -> float:
        """VAE KL weight: linear warm-up from 0 to ``kl_weight`` over ``kl_warmup_steps``."""
        c = self.config
        if c.kl_warmup_steps <= 0:
            return float(c.kl_weight)
        return float(c.kl_weight) * min(1.0, step / c.kl_warmup_steps)

    # ------------------------------------------------------------------------------------------
    # Encoder side

    def _features(self, input_values: torch.Tensor, sample_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, samples)`` → normalised features ``(batch, frames, dim)`` at 100 Hz and their lengths."""
        samples = input_values.shape[-1]
        frames = int(self.front_end.frame_lengths(torch.tensor(samples)))
        mask = mask_from_lengths(sample_lengths, samples)
        frame_lengths = self.front_end.frame_lengths(sample_lengths).clamp(min=1, max=frames)
        # Zeroed padding + the front-end's zero-padded windows and length-aware deltas: every utterance
        # gets exactly the features it gets alone.
        features = self.front_end(input_values.float() * mask, frame_lengths)  # (B, T, D)
        if self.config.normalize_features:
            # Statistics over every real frame (unit variance bounds each value by sqrt(frames), even for
            # near-silent crops whose variance is tiny).
            return masked_cmvn(features, frame_lengths), frame_lengths
        frame_mask = mask_from_lengths(frame_lengths, frames).unsqueeze(-1).to(features.dtype)  # (B, T, 1)
        return features * frame_mask, frame_lengths

    def encode(self, input_values: torch.Tensor, sample_lengths: torch.Tensor, example_seeds: Optional[torch.Tensor] = None) -> dict:
        """The encoder side up to the bottleneck: ``enc``, ``proj``, ``bn`` ``(batch, frames, dim)``, the
        :class:`~repr_asr.modules.BottleneckOutput`, latent ``lengths`` and ``mask``. ``example_seeds``
        ``(batch,)`` seeds each example's random draws in training (:mod:`repr_asr.modules.randomness`)."""
        if input_values.dim() != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}")
        features, frame_lengths = self._features(input_values, sample_lengths)
        enc, lengths = self.encoder(features.to(self.projection.weight.dtype), frame_lengths)  # (B, T, H)
        mask = mask_from_lengths(lengths, enc.shape[1])  # (B, T)
        proj = self.projection(enc) * mask.unsqueeze(-1).to(enc.dtype)  # (B, T, P), zero past each length
        bn = self.bottleneck(proj, mask, example_seeds=example_seeds)
        latents = bn.latents
        if self.config.sparse_emission_window > 1:
            latents = sparse_emission(latents, self.config.sparse_emission_window, self.config.sparse_emission_keep)
        latents = latents * mask.unsqueeze(-1).to(latents.dtype)
        return {"enc": enc, "proj": proj, "bn": latents, "bottleneck": bn, "lengths": lengths, "mask": mask}

    def condition(self, latents: torch.Tensor, lengths: torch.Tensor, example_seeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        """pcond: jitter (training only) then the conditioning convolution, ``(batch, frames, channels)``."""
        return self.conditioning.mix(self.jitter(latents, lengths, example_seeds), lengths)

    def decoder_condition(self, cond: torch.Tensor, speaker_ids: Optional[torch.Tensor]) -> torch.Tensor:
        """What the WaveNet sees: pcond (+ speaker embedding) ``(batch, frames, channels)``."""
        return self.conditioning.with_speaker(cond, speaker_ids)

    # ------------------------------------------------------------------------------------------
    # Decoder side

    def _zero_class(self) -> int:
        return int(mu_law_encode(torch.zeros(1), self.config.quantization_channels))

    def reconstruction_nll(self, input_values: torch.Tensor, sample_lengths: torch.Tensor, cond_dec: torch.Tensor) -> torch.Tensor:
        """Mean NLL in nats per real sample of the mu-law waveform given the condition ``(batch, frames, C)``,
        teacher-forced on the previous sample."""
        spf = self.samples_per_latent
        samples = input_values.shape[-1]
        # The decoder is causal: frames past the last real sample are never needed.
        frames = min(cond_dec.shape[1], -(-samples // spf))
        dec_samples = frames * spf
        mask = mask_from_lengths(sample_lengths, samples)
        wav = F.pad(input_values.float() * mask, (0, dec_samples - samples))  # (B, S')
        targets = mu_law_encode(wav, self.config.quantization_channels)  # (B, S')
        prev = F.pad(targets[:, :-1], (1, 0), value=self._zero_class())  # teacher forcing: shift right by one
        skip = self.decoder(prev, cond_dec[:, :frames])  # (B, S', K)
        sample_mask = mask_from_lengths(sample_lengths, dec_samples)
        n_real = int(sample_mask.sum())
        if n_real == 0:
            raise ValueError("reconstruction loss needs at least one real sample in the batch (all lengths are 0)")
        # The head and the softmax run only on real samples.
        if n_real == sample_mask.numel():
            selected = skip.reshape(-1, skip.shape[-1])  # (B*S', K)
            selected_targets = targets.reshape(-1)
        else:
            selected = skip[sample_mask]  # (N, K)
            selected_targets = targets[sample_mask]
        logits = self.decoder.head(selected)  # (N, Q)
        # Sum over this process's samples / the sample count shared by every training process: DDP's
        # averaged gradients are then one process's over the union of batches (modules.distributed).
        total = F.cross_entropy(logits.float(), selected_targets, reduction="sum")
        return total / global_count(torch.tensor(float(n_real), device=total.device))

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        speaker_ids: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
        compute_loss: bool = False,
        example_seeds: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> UpstreamOutput:
        """``input_values`` ``(batch, samples)`` 16 kHz waveform, ``attention_mask`` ``(batch, samples)``,
        ``speaker_ids`` ``(batch,)`` long indices into ``config.speakers`` (needed with speaker conditioning
        when ``compute_loss``), ``example_seeds`` ``(batch,)`` long seeds of each example's jitter and VAE
        noise in training (torch's global RNG when None)."""
        sample_lengths = lengths_from_mask(attention_mask, input_values)
        encoded = self.encode(input_values, sample_lengths, example_seeds)
        lengths = encoded["lengths"]
        cond = self.condition(encoded["bn"], lengths, example_seeds)
        probes = {"enc": encoded["enc"], "proj": encoded["proj"], "bn": encoded["bn"], "cond": cond}
        loss, metrics = None, None
        if compute_loss:
            loss, metrics = self._loss(input_values, sample_lengths, encoded, cond, speaker_ids)
        return self.upstream_output(probes, lengths, output_hidden_states, loss, metrics)

    def _loss(self, input_values, sample_lengths, encoded, cond, speaker_ids) -> tuple[torch.Tensor, dict]:
        bn = encoded["bottleneck"]
        nll = self.reconstruction_nll(input_values, sample_lengths, self.decoder_condition(cond, speaker_ids))
        frame_rate = self.config.sampling_rate / self.samples_per_latent
        keep = 1.0
        if self.config.sparse_emission_window > 1:
            keep = self.config.sparse_emission_keep / self.config.sparse_emission_window
        metrics = {"nll_nats": nll.detach(), "bits_per_sample": nll.detach() / math.log(2.0)}
        metrics.update(bn.metrics)
        loss = nll
        if isinstance(self.bottleneck, GaussianBottleneck):
            # KL is in nats per frame; ELBO-consistent scaling to nats per sample.
            frames_per_sample = encoded["mask"].sum().float() / sample_lengths.sum().clamp(min=1).float()
            weight = self.kl_weight_at(self._step)
            loss = loss + weight * bn.loss * frames_per_sample
            metrics["kl_weight"] = torch.tensor(weight)
        elif bn.loss is not None:
            loss = loss + bn.loss
        metrics["bitrate"] = (bn.bits_per_frame * frame_rate * keep).detach().float()
        metrics["loss"] = loss.detach()
        return loss, metrics

    # ------------------------------------------------------------------------------------------
    # Generation

    @torch.no_grad()
    def resynthesize(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        speaker_ids: Optional[torch.Tensor] = None,
        temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
        progress: Optional[bool] = False,
    ) -> torch.Tensor:
        """Encode, then generate a waveform ``(batch, samples)`` sample by sample with cached dilated
        convolutions. ``temperature`` scales the logits (0 = argmax). With another speaker's
        ``speaker_ids`` this is voice conversion; -1 decodes with the average training speaker (for a
        speaker never seen in training). Padded positions are zero. ``progress``: a tqdm bar over the
        samples (None: on a terminal only)."""
        was_training = self.training
        self.eval()
        try:
            sample_lengths = lengths_from_mask(attention_mask, input_values)
            encoded = self.encode(input_values, sample_lengths)
            cond_dec = self.decoder_condition(self.condition(encoded["bn"], encoded["lengths"]), speaker_ids)
            samples = input_values.shape[-1]
            frames = min(cond_dec.shape[1], -(-samples // self.samples_per_latent))
            cache = self.decoder.init_cache(cond_dec[:, :frames], self.samples_per_latent)
            prev = torch.full((input_values.shape[0],), self._zero_class(), dtype=torch.long, device=input_values.device)
            classes = torch.empty(input_values.shape[0], samples, dtype=torch.long, device=input_values.device)
            for t in tqdm(range(samples), desc="generating", unit="sample", disable=None if progress is None else not progress,
                          mininterval=1.0):
                logits = self.decoder.step(prev, cache).float()  # (B, Q)
                if temperature <= 0:
                    prev = logits.argmax(-1)
                else:
                    prev = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator).squeeze(1)
                classes[:, t] = prev
            waveform = mu_law_decode(classes, self.config.quantization_channels)
            return waveform * mask_from_lengths(sample_lengths, samples).to(waveform.dtype)
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------------------------------

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default fan-in init for convolutions and linear layers (the WaveNet is deep and
        narrow-ish: N(0, 0.02) would shrink its activations), N(0, 1) for embeddings, and the VQ
        codebook with its EMA state."""
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1] * (module.weight.shape[2] if module.weight.dim() > 2 else 1)
                bound = 1.0 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, 0.0, 1.0)
        elif isinstance(module, VectorQuantizer):
            module.init_state()
