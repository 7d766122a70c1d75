"""Contrastive predictive coding (modified CPC) as an upstream.

Waveform ``(batch, samples)`` → strided conv encoder → ``enc`` ``(batch, frames, conv_dim)`` at 100 Hz →
causal LSTM/GRU → ``ctx`` ``(batch, frames, context_hidden_size)``. Pretraining: from each context frame
``c_t``, K linear predictors score the true future encoder frame ``z_{t+k}`` against negatives drawn from
real (never padded) encoder frames, with the InfoNCE loss (van den Oord et al. 2018, arXiv 1807.03748;
modified CPC: Rivière et al. 2020, arXiv 2002.02848).

Padding: every encoder layer zeroes its outputs past each utterance's length, which is exactly what
the conv's own zero padding gives an utterance alone, so a padded batch gives each utterance its lone
features; the context network is causal, so real frames never read padding either.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import can_return_tuple

from ...modules.distributed import global_count
from ...modules.masking import lengths_from_mask, mask_from_lengths
from ...modules.randomness import example_rand
from ..upstream import UpstreamMixin, UpstreamOutput
from .configuration_cpc import CPCConfig


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Frames a ``Conv1d(kernel, stride, padding)`` makes of ``lengths`` inputs, 0 when too short."""
    return (torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)


class CPCEncoder(nn.Module):
    """Strided Conv1d → channel norm → ReLU per layer; ``(batch, samples)`` → ``(batch, frames, conv_dim)``."""

    def __init__(self, config: CPCConfig):
        super().__init__()
        self.layout = list(zip(config.conv_kernel, config.conv_stride, config.conv_padding))
        channels = [1] + [config.conv_dim] * len(self.layout)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels[i], channels[i + 1], kernel, stride=stride, padding=padding)
            for i, (kernel, stride, padding) in enumerate(self.layout)
        )
        # LayerNorm over the channels of one frame = CPC_audio's ChannelNorm (per-frame statistics only).
        self.norms = nn.ModuleList(
            nn.LayerNorm(config.conv_dim) if config.conv_norm == "channel" else nn.Identity() for _ in self.layout
        )

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        lengths = sample_lengths
        for kernel, stride, padding in self.layout:
            lengths = conv_output_lengths(lengths, kernel, stride, padding)
        return lengths

    def min_samples(self) -> int:
        """The shortest input for which every layer makes at least one frame."""
        needed = 1
        for kernel, stride, padding in reversed(self.layout):
            needed = max(1, (needed - 1) * stride + kernel - 2 * padding)
        return needed

    def forward(self, waveform: torch.Tensor, sample_lengths: torch.Tensor):
        """``(batch, samples)`` → ``(batch, frames, conv_dim)`` and ``(batch,)`` frame lengths."""
        if waveform.shape[-1] < self.min_samples():
            # A batch of only very short (or empty) inputs: pad so the convs run; lengths stay exact.
            waveform = F.pad(waveform, (0, self.min_samples() - waveform.shape[-1]))
        lengths = sample_lengths
        x = (waveform * mask_from_lengths(lengths, waveform.shape[-1])).unsqueeze(1)  # (B, 1, S)
        for conv, norm, (kernel, stride, padding) in zip(self.convs, self.norms, self.layout):
            x = conv(x)  # (B, C, T_l)
            lengths = conv_output_lengths(lengths, kernel, stride, padding).clamp(max=x.shape[-1])
            hidden = torch.relu(norm(x.transpose(1, 2)))  # (B, T_l, C)
            hidden = hidden * mask_from_lengths(lengths, hidden.shape[1]).unsqueeze(-1).to(hidden.dtype)
            x = hidden.transpose(1, 2)  # (B, C, T_l)
        return hidden, lengths


class CPCModel(UpstreamMixin, PreTrainedModel):
    """Modified CPC upstream: probe points ``"enc"`` (conv encoder) and ``"ctx"`` (causal context).

    Example:
        >>> import torch
        >>> from repr_asr import CPCConfig, CPCModel
        >>> config = CPCConfig(conv_dim=32, context_hidden_size=48, prediction_steps=4, num_negatives=8)
        >>> model = CPCModel(config)
        >>> out = model(torch.randn(2, 16000), output_hidden_states=True, compute_loss=True)
        >>> tuple(out.last_hidden_state.shape), [tuple(h.shape) for h in out.hidden_states]
        ((2, 100, 48), [(2, 100, 32), (2, 100, 48)])
        >>> sorted(out.metrics)[:3]
        ['acc_step_1', 'acc_step_2', 'acc_step_3']
    """

    config_class = CPCConfig
    base_model_prefix = "cpc"
    main_input_name = "input_values"

    def __init__(self, config: CPCConfig):
        super().__init__(config)
        self.encoder = CPCEncoder(config)
        rnn = nn.LSTM if config.context_type == "lstm" else nn.GRU
        self.context = rnn(config.conv_dim, config.context_hidden_size, num_layers=config.context_layers, batch_first=True)
        self.predictor_dropout = nn.Dropout(config.predictor_dropout)
        hidden, steps = config.context_hidden_size, config.prediction_steps
        if config.predictor_type == "transformer":
            # Modified CPC: one causally masked transformer layer per step, no positional encoding (the
            # causal mask and the recurrent context already carry order).
            self.predictor_layers = nn.ModuleList(
                nn.TransformerEncoderLayer(
                    hidden, config.predictor_heads, config.predictor_ffn_dim, dropout=config.predictor_dropout, batch_first=True
                )
                for _ in range(steps)
            )
        # K linear maps W_k stacked into one matrix: output block k belongs to step k.
        self.predictors = nn.Linear(hidden, steps * config.conv_dim)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, nn.GRU):  # the base initialises LSTMs only; treat the GRU alike
            for name, param in module.named_parameters():
                if "weight" in name:
                    nn.init.xavier_uniform_(param)
                else:
                    nn.init.zeros_(param)

    # ----- the upstream interface -------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.probe_dims()[self.config.default_probe_point]

    def probe_dims(self) -> dict:
        return {"enc": self.config.conv_dim, "ctx": self.config.context_hidden_size}

    def probe_samples_per_frame(self) -> dict:
        return {"enc": self.config.samples_per_frame, "ctx": self.config.samples_per_frame}

    def frame_lengths_at(self, sample_lengths: torch.Tensor, probe_point: str) -> torch.Tensor:
        self.check_probe_point(probe_point)
        return self.encoder.output_lengths(torch.as_tensor(sample_lengths).long())

    # ----- contrastive loss ---------------------------------------------------------------------
    def sample_negatives(self, frame_lengths: torch.Tensor, num_frames: int, speaker_ids: Optional[torch.Tensor] = None,
                         example_seeds: Optional[torch.Tensor] = None):
        """Draw ``num_negatives`` real frames for every ``(utterance, frame)`` query, uniformly from its pool.

        Returns ``(utterance_index, frame_index)``, each ``(batch, num_frames, num_negatives)`` long. Every
        drawn frame is real (``frame_index < frame_lengths[utterance_index]``) for each utterance that has a
        real frame in its pool; an utterance with an empty pool gets placeholders it never uses (it has no
        valid prediction either). The positive itself may be drawn, as in CPC_audio (rarely, in long pools).
        With ``example_seeds`` ``(batch,)`` each row's draws come from its example's seed: with
        ``negative_sampling="utterance"`` an example's negatives then do not depend on its batch (with
        "speaker" or "batch" the pool itself is the batch on this process).
        """
        batch, device = frame_lengths.shape[0], frame_lengths.device
        mode = self.config.negative_sampling
        same = torch.eye(batch, dtype=torch.bool, device=device)  # (B, B): may row b draw from utterance j
        if mode == "batch":
            same = torch.ones_like(same)
        elif mode == "speaker" and speaker_ids is not None:
            speaker_ids = torch.as_tensor(speaker_ids, device=device).long().view(-1)
            if speaker_ids.shape[0] != batch:
                raise ValueError(f"speaker_ids has {speaker_ids.shape[0]} entries for a batch of {batch} utterances")
            known = speaker_ids >= 0
            same = same | ((speaker_ids[:, None] == speaker_ids[None, :]) & known[:, None] & known[None, :])
        sizes = same.long() * frame_lengths.long()[None, :]  # (B, B) frames row b may draw from utterance j
        ends = sizes.cumsum(1)  # (B, B)
        total = ends[:, -1:]  # (B, 1)
        count = num_frames * self.config.num_negatives
        # One uniform draw over the row's pool, then find the utterance it falls in.
        draws = (example_rand(example_seeds, (batch, count), "cpc_negatives", device=device) * total).long()
        draws = torch.minimum(draws, total - 1).clamp(min=0)  # (B, T*N)
        utterance = torch.searchsorted(ends, draws, right=True).clamp(max=batch - 1)  # (B, T*N)
        frame = draws - (ends.gather(1, utterance) - sizes.gather(1, utterance))
        frame = frame.clamp(0, max(num_frames - 1, 0))
        shape = (batch, num_frames, self.config.num_negatives)
        return utterance.view(shape), frame.view(shape)

    def predict(self, ctx: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, hidden)`` context → ``(batch, frames, K, conv_dim)`` predictions of ``enc[t + k]``.

        Causal: the prediction at ``t`` reads only ``ctx[:t + 1]``, so it never sees the frames it predicts.
        """
        batch, frames, _ = ctx.shape
        steps, dim = self.config.prediction_steps, self.config.conv_dim
        ctx = self.predictor_dropout(ctx)
        if self.config.predictor_type == "linear":
            return self.predictors(ctx).view(batch, frames, steps, dim)  # (B, T, K, D)
        causal = torch.triu(torch.full((frames, frames), float("-inf"), device=ctx.device, dtype=ctx.dtype), diagonal=1)
        weight = self.predictors.weight.view(steps, dim, -1)  # (K, D, H)
        bias = self.predictors.bias.view(steps, dim)  # (K, D)
        outputs = [
            F.linear(layer(ctx, src_mask=causal, is_causal=True), weight[k], bias[k])  # (B, T, D)
            for k, layer in enumerate(self.predictor_layers)
        ]
        return torch.stack(outputs, dim=2)  # (B, T, K, D)

    def contrastive_loss(self, enc: torch.Tensor, ctx: torch.Tensor, frame_lengths: torch.Tensor, speaker_ids=None,
                         example_seeds=None):
        """InfoNCE of predicting ``enc[t + k]`` from ``ctx[t]``, k = 1..K, over real frames only.

        Args:
            enc: ``(batch, frames, conv_dim)`` encoder frames (the targets).
            ctx: ``(batch, frames, hidden)`` context frames (the queries).
            frame_lengths: ``(batch,)`` real frames per utterance.
        Returns:
            the loss (mean negative log-likelihood over every valid ``(utterance, t, k)``) and metrics.
        """
        batch, frames, dim = enc.shape
        steps = self.config.prediction_steps
        predictions = self.predict(ctx)  # (B, T, K, D)
        # Future targets: futures[:, t, k-1] = enc[:, t + k] (zeros past the end, masked below).
        futures = torch.stack([F.pad(enc[:, k:], (0, 0, 0, k)) for k in range(1, steps + 1)], dim=2)  # (B, T, K, D)
        offsets = torch.arange(1, steps + 1, device=enc.device)
        positions = torch.arange(frames, device=enc.device)
        valid = (positions[None, :, None] + offsets[None, None, :]) < frame_lengths[:, None, None]  # (B, T, K)

        utterance, frame = self.sample_negatives(frame_lengths, frames, speaker_ids, example_seeds)
        negatives = enc[utterance, frame]  # (B, T, N, D)
        positive_scores = (predictions * futures).sum(-1, keepdim=True)  # (B, T, K, 1)
        negative_scores = predictions @ negatives.transpose(-1, -2)  # (B, T, K, N)
        logits = torch.cat([positive_scores, negative_scores], dim=-1).float()  # (B, T, K, 1 + N)
        nll = torch.logsumexp(logits, dim=-1) - logits[..., 0]  # (B, T, K)
        # Strictly above every negative: ties (e.g. all-zero predictions) do not count as correct.
        correct = logits[..., 0] > logits[..., 1:].amax(-1)  # (B, T, K)

        valid_f = valid.float()
        count = valid_f.sum()
        # Divided by the count shared by every training process: DDP's averaged gradients are then those of
        # one process over the union of the batches (repr_asr.modules.distributed).
        loss = (nll * valid_f).sum() / global_count(count).clamp(min=1.0)
        per_step_count = valid_f.sum((0, 1)).clamp(min=1.0)  # (K,)
        per_step_acc = (correct.float() * valid_f).sum((0, 1)) / per_step_count  # (K,)
        metrics = {"loss": loss.detach(), "accuracy": ((correct.float() * valid_f).sum() / count.clamp(min=1.0)).detach()}
        for k in range(steps):
            metrics[f"acc_step_{k + 1}"] = per_step_acc[k].detach()
        return loss, metrics

    # ----- forward ----------------------------------------------------------------------------
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
        """Features at the probe points, and the InfoNCE loss with ``compute_loss=True``.

        Args:
            input_values: ``(batch, samples)`` waveform at ``config.sampling_rate``.
            attention_mask: ``(batch, samples)``, 1 at real samples (all real when omitted).
            output_hidden_states: also return every probe point in ``config.probe_points`` order.
            compute_loss: compute the pretraining loss and ``metrics`` (loss, ``accuracy``,
                ``acc_step_1`` ... ``acc_step_K``).
            speaker_ids: ``(batch,)`` long, used only by ``negative_sampling="speaker"``.
            example_seeds: ``(batch,)`` long seeds of each example's negatives (global RNG when None).
        """
        if input_values.dim() != 2:
            raise ValueError(f"CPCModel expects input_values of shape (batch, samples), got {tuple(input_values.shape)}")
        sample_lengths = lengths_from_mask(attention_mask, input_values)
        weight = self.encoder.convs[0].weight
        enc, frame_lengths = self.encoder(input_values.to(device=weight.device, dtype=weight.dtype), sample_lengths.to(weight.device))
        probes = {"enc": enc}
        wanted = {self.config.default_probe_point} | (set(self.config.probe_points) if output_hidden_states else set())
        if compute_loss or "ctx" in wanted:
            ctx, _ = self.context(enc)  # (B, T, H); causal, so real frames never see padding
            probes["ctx"] = ctx * mask_from_lengths(frame_lengths, ctx.shape[1]).unsqueeze(-1).to(ctx.dtype)

        loss = metrics = None
        if compute_loss:
            loss, metrics = self.contrastive_loss(enc, probes["ctx"], frame_lengths, speaker_ids, example_seeds)
        return self.upstream_output(probes, frame_lengths, output_hidden_states, loss, metrics)


def training_step_flops(config: CPCConfig, batch_size: int, num_samples: int) -> int:
    """FLOPs of one pretraining step (forward + backward of the loss) on ``batch_size`` crops of
    ``num_samples`` samples, counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convs)."""
    import warnings

    from torch.utils.flop_counter import FlopCounterMode

    model = CPCModel(config)
    waveform = torch.randn(batch_size, num_samples)
    # oneDNN's fused CPU LSTM kernel is invisible to the counter; the native path runs the same matmuls.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            model(waveform, compute_loss=True).loss.backward()
    return counter.get_total_flops()
