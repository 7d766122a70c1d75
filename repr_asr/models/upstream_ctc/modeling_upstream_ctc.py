"""The downstream ASR model: any upstream's features → CTC head → characters or sentencepiece units."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutput
from transformers.utils import can_return_tuple

from ...modules.bilstm import PaddedBiLSTM
from ...modules.masking import lengths_from_mask, mask_from_lengths
from ..foreign import WrappedUpstream, upstream_from_config, wrap_transformers_model
from .configuration_upstream_ctc import UpstreamForCTCConfig

logger = logging.getLogger(__name__)


@dataclass
class UpstreamCTCOutput(CausalLMOutput):
    """``CausalLMOutput`` (``loss``, ``logits`` ``(batch, frames, vocab)``) plus what CTC training needs.

    Attributes:
        output_lengths: ``(batch,)`` real output frames per utterance (the CTC input lengths).
        metrics: with labels: ``ctc_loss`` and ``too_long`` (number of utterances in the batch whose
            labels cannot be aligned to their frames; their loss is zeroed, not dropped silently).
    """

    output_lengths: Optional[torch.Tensor] = None
    metrics: Optional[dict] = None


def ctc_min_frames(labels: torch.Tensor) -> torch.Tensor:
    """``(batch,)`` fewest frames CTC needs for each label row (padded with -100): the label length plus
    one blank between every pair of equal neighbours."""
    valid = labels >= 0
    repeats = (labels[:, 1:] == labels[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    return valid.sum(-1) + repeats.sum(-1)


class CTCHead(nn.Module):
    """Features ``(batch, frames, dim)`` → logits ``(batch, ceil(frames / stride), vocab)``."""

    def __init__(self, config: UpstreamForCTCConfig, input_dim: int):
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        dim = input_dim
        self.lstm = None
        if config.head_type == "bilstm":
            self.lstm = PaddedBiLSTM(
                input_dim, config.head_hidden_size, num_layers=config.head_num_layers,
                dropout=config.dropout if config.head_num_layers > 1 else 0.0,
            )
            dim = 2 * config.head_hidden_size
        if config.reduction_stride > 1:
            self.output = nn.Conv1d(dim, config.vocab_size, config.reduction_kernel, stride=config.reduction_stride)
        else:
            self.output = nn.Linear(dim, config.vocab_size)

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        stride = self.config.reduction_stride
        return torch.div(frame_lengths + stride - 1, stride, rounding_mode="floor")  # ceil; 0 stays 0

    def forward(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        mask = mask_from_lengths(frame_lengths, features.shape[1]).unsqueeze(-1)  # (B, T, 1)
        x = self.dropout(features) * mask
        if self.lstm is not None:
            # The backward direction starts at each utterance's last real frame, not in padding.
            x = self.lstm(x, frame_lengths)
            x = self.dropout(x) * mask  # (B, T, 2H)
        if isinstance(self.output, nn.Conv1d):
            # Right-pad with kernel-1 zeros: ceil(T/stride) outputs, and each real output window sees only
            # real frames and zeros, exactly as the utterance alone would (padding never leaks in).
            x = F.pad(x.transpose(1, 2), (0, self.config.reduction_kernel - 1))  # (B, D, T + k - 1)
            return self.output(x).transpose(1, 2)  # (B, ceil(T/stride), V)
        return self.output(x)  # (B, T, V)


class UpstreamForCTC(PreTrainedModel):
    """An upstream (frozen or fine-tuned) with a CTC head; loadable with ``AutoModelForCTC`` and usable
    by ``transformers.pipeline("automatic-speech-recognition", model=DIR)``.

    Example:
        >>> import torch, repr_asr
        >>> from repr_asr.models import load_upstream
        >>> from repr_asr.models.upstream_ctc import UpstreamForCTC
        >>> model = UpstreamForCTC.from_upstream(load_upstream("fbank"), vocab_size=30, pad_token_id=0)
        >>> model(torch.zeros(1, 16000)).logits.shape
        torch.Size([1, 101, 30])
    """

    config_class = UpstreamForCTCConfig
    base_model_prefix = "upstream_ctc"
    main_input_name = "input_values"
    supports_gradient_checkpointing = False

    def __init__(self, config: UpstreamForCTCConfig, upstream: Optional[nn.Module] = None):
        super().__init__(config)
        # ``upstream``: an upstream to use as it is (from_upstream with a WrappedUpstream no config rebuilds).
        self.upstream = upstream if upstream is not None else upstream_from_config(config)
        configure = getattr(self.upstream, "configure_fine_tuning", None)
        if configure is not None:  # a transformers speech encoder: frozen conv stack, its own masking and LayerDrop
            configure(config.upstream_mask_time_prob, config.upstream_mask_feature_prob, config.upstream_layerdrop)
        self.probe_point = config.probe_point or self.upstream.default_probe_point
        dims = self.upstream.probe_dims()
        rates = self.upstream.probe_samples_per_frame()
        if self.probe_point not in dims:
            raise ValueError(
                f"probe_point {self.probe_point!r} is not one of the upstream's probe points {list(dims)}"
            )
        # The learned mix: every point at the probe point's frame rate (others cannot be summed frame by frame),
        # layer-normed, mapped to one width where theirs differs, softmax-weighted (config docstring).
        self.weighted_probe_points = [self.probe_point]
        self.mix_left_out: list[str] = []  # probe points at another frame rate than the mix's
        self.mix_dim = int(dims[self.probe_point])
        self.layer_weights = None
        self.mix_projections = None
        if config.weighted_sum:
            rate = rates[self.probe_point]
            self.weighted_probe_points = [p for p in self.upstream.probe_points if rates[p] == rate]
            self.mix_left_out = [p for p in self.upstream.probe_points if rates[p] != rate]
            if self.mix_left_out:
                logger.warning("weighted_sum mixes %s at %d samples per frame; left out (another frame rate): %s",
                               self.weighted_probe_points, int(rate),
                               ", ".join(f"{p} ({int(rates[p])} samples per frame)" for p in self.mix_left_out))
            self.mix_dim = int(config.weighted_sum_dim or dims[self.probe_point])
            self.layer_weights = nn.Parameter(torch.zeros(len(self.weighted_probe_points)))
            self.mix_projections = nn.ModuleDict({
                _module_key(p): nn.Linear(dims[p], self.mix_dim, bias=False)
                for p in self.weighted_probe_points if dims[p] != self.mix_dim
            })
        # The widths of the points read, in order: how the concatenated cached features split.
        self.point_dims = [int(dims[p]) for p in self.weighted_probe_points]
        self.head = CTCHead(config, self.mix_dim)
        self.time_masking = (
            torchaudio.transforms.TimeMasking(config.time_mask_width, iid_masks=True)
            if config.time_mask_width > 0 else None
        )
        self.feature_masking = (
            torchaudio.transforms.FrequencyMasking(config.feature_mask_width, iid_masks=True)
            if config.feature_mask_width > 0 else None
        )
        # The HF ASR pipeline reads this to map output frames back to samples.
        config.inputs_to_logits_ratio = int(rates[self.probe_point]) * config.reduction_stride
        self._train_step = 0
        if config.freeze_upstream:
            self.upstream.requires_grad_(False)
        self.post_init()

    # ------------------------------------------------------------------ construction for recipes

    @classmethod
    def from_upstream(cls, upstream: PreTrainedModel, vocab_size: int, pad_token_id: int = 0, **head_options):
        """A CTC model around ``upstream`` (a loaded upstream model, e.g. ``load_upstream(path)``, or a
        transformers speech encoder, which is wrapped), keeping its weights. A ``WrappedUpstream`` around an
        arbitrary module is used as it is: such a model trains and decodes but cannot be reloaded from a folder."""
        upstream = wrap_transformers_model(upstream)
        config = UpstreamForCTCConfig(
            upstream_config=upstream.config.to_dict(), vocab_size=vocab_size, pad_token_id=pad_token_id,
            **head_options,
        )
        if isinstance(upstream, WrappedUpstream) and upstream.config.base is None:
            return cls(config, upstream=upstream)
        model = cls(config)
        model.upstream.load_state_dict(upstream.state_dict())
        return model

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' defaults, except the learned mix: zero logits (a uniform mix) and maps to the common
        width drawn N(0, 1/width in), so a mapped point starts at the unit scale of the layer-normed ones."""
        super()._init_weights(module)
        if module is self and self.layer_weights is not None:
            init.zeros_(self.layer_weights)
        if self.mix_projections is not None and any(module is m for m in self.mix_projections.values()):
            init.normal_(module.weight, mean=0.0, std=module.in_features ** -0.5)

    # ------------------------------------------------------------------ the learned mix

    def layer_mix_weights(self) -> Optional[dict]:
        """``{probe point: softmax weight}`` of the learned mix in ``weighted_probe_points`` order (None without
        ``weighted_sum``): which points the head reads."""
        if self.layer_weights is None:
            return None
        weights = torch.softmax(self.layer_weights.detach().float(), dim=0).cpu().tolist()
        return dict(zip(self.weighted_probe_points, weights))

    def layer_mix_record(self) -> dict:
        """What ``results.json`` says of the learned mix (empty without ``weighted_sum``): ``layer_weights``
        (:meth:`layer_mix_weights`) and ``layer_mix`` (the points mixed, those left out for their frame rate,
        the common width and which points were mapped to it, the frame rate)."""
        if self.layer_weights is None:
            return {}
        dims = dict(zip(self.weighted_probe_points, self.point_dims))
        return {
            "layer_weights": self.layer_mix_weights(),
            "layer_mix": {
                "points": list(self.weighted_probe_points),
                "left_out": list(self.mix_left_out),
                "dim": self.mix_dim,
                "projected": [p for p in self.weighted_probe_points if dims[p] != self.mix_dim],
                "frame_rate": float(self.upstream.frame_rate(self.probe_point)),
            },
        }

    # ------------------------------------------------------------------ frozen / fine-tuned

    def upstream_is_frozen(self) -> bool:
        """True while the upstream gets no gradient (always when frozen, else during the first N steps)."""
        return self.config.freeze_upstream or self._train_step < self.config.freeze_upstream_steps

    def on_train_step(self, step: int) -> None:
        """Called by the trainer before optimisation step ``step`` (0-based); ends the frozen warm-up."""
        self._train_step = int(step)
        self.train(self.training)  # re-apply the upstream's mode

    def train(self, mode: bool = True):
        super().train(mode)
        if self.upstream_is_frozen():
            self.upstream.eval()  # a frozen upstream is a fixed feature extractor: no dropout, no stat updates
        return self

    def parameter_groups(self) -> list[dict]:
        """Optimizer groups: the upstream's (``lr_scale = upstream_lr_scale``) and the head's (``lr_scale = 1``).

        Only parameters with ``requires_grad`` are listed, and a group with none (a spectral or
        permanently frozen upstream) is left out; the trainer multiplies its learning rate by ``lr_scale``.
        """
        upstream = [p for p in self.upstream.parameters() if p.requires_grad]
        upstream_ids = {id(p) for p in self.upstream.parameters()}
        head = [p for p in self.parameters() if p.requires_grad and id(p) not in upstream_ids]
        groups = [
            {"params": upstream, "lr_scale": float(self.config.upstream_lr_scale)},
            {"params": head, "lr_scale": 1.0},
        ]
        return [g for g in groups if g["params"]]

    # ------------------------------------------------------------------ lengths

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` output frames (CTC input lengths) for ``(batch,)`` real sample counts."""
        return self.head.output_lengths(self.upstream.frame_lengths(sample_lengths, self.probe_point))

    # ------------------------------------------------------------------ forward

    def _features(self, input_values: torch.Tensor, attention_mask: Optional[torch.Tensor]):
        frozen = self.upstream_is_frozen()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            out = self.upstream(
                input_values, attention_mask=attention_mask, output_hidden_states=True
            )
        states = dict(zip(self.upstream.probe_points, out.hidden_states))
        sample_lengths = lengths_from_mask(attention_mask, input_values)
        frame_lengths = self.upstream.frame_lengths(sample_lengths, self.probe_point)
        return self._combine([states[p] for p in self.weighted_probe_points], frame_lengths)

    def split_features(self, upstream_features: torch.Tensor) -> list[torch.Tensor]:
        """Cached features → one ``(batch, frames, dim_p)`` tensor per point of ``weighted_probe_points``:
        from ``(batch, frames, sum of dims)`` (the points concatenated along the features, as the CTC recipe
        caches them) or ``(batch, points, frames, dim)`` (points of one width, stacked)."""
        if upstream_features.dim() == 4:
            return list(upstream_features.unbind(1))
        if upstream_features.dim() != 3 or upstream_features.shape[-1] != sum(self.point_dims):
            raise ValueError(f"upstream_features of shape {tuple(upstream_features.shape)}: expected (batch, frames, "
                             f"{sum(self.point_dims)}), the features of {self.weighted_probe_points} (dims {self.point_dims}) "
                             "concatenated, or (batch, points, frames, dim)")
        return list(upstream_features.split(self.point_dims, dim=-1))

    def _combine(self, points: Sequence[torch.Tensor], frame_lengths: torch.Tensor):
        """One ``(batch, frames, dim_p)`` tensor per point of ``weighted_probe_points`` → ``(batch, frames, dim)``
        features for the head (one point as it is, or the learned mix) and the frame lengths."""
        frames = min(p.shape[1] for p in points)  # points at one rate may differ by an edge frame
        dtype = self.head.output.weight.dtype
        if self.layer_weights is None:
            features = points[0][:, :frames].to(dtype)
        else:
            weights = torch.softmax(self.layer_weights, dim=0).to(dtype)
            features = 0
            for weight, name, x in zip(weights, self.weighted_probe_points, points):
                # Per frame: padding never reaches a real frame (s3prl's featurizer: layer norm, no affine).
                x = F.layer_norm(x[:, :frames].to(dtype), x.shape[-1:])
                key = _module_key(name)
                if key in self.mix_projections:
                    x = self.mix_projections[key](x)
                features = features + weight * x  # (B, T, mix_dim)
        return features, frame_lengths.clamp(max=frames)

    def _spec_augment(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training or (self.time_masking is None and self.feature_masking is None):
            return features
        x = features.transpose(1, 2)  # (B, D, T): torchaudio masks (..., freq, time)
        for _ in range(self.config.feature_mask_count if self.feature_masking is not None else 0):
            x = self.feature_masking(x)
        for _ in range(self.config.time_mask_count if self.time_masking is not None else 0):
            x = self.time_masking(x)
        return x.transpose(1, 2)  # (B, T, D)

    @can_return_tuple
    def forward(
        self,
        input_values: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        upstream_features: Optional[Union[torch.Tensor, Sequence[torch.Tensor]]] = None,
        feature_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> UpstreamCTCOutput:
        """``input_values`` ``(batch, samples)``, ``attention_mask`` ``(batch, samples)``, ``labels``
        ``(batch, max_label_len)`` padded with -100 → logits ``(batch, frames, vocab)`` (+ CTC loss).

        Instead of audio, a frozen upstream's precomputed features at ``weighted_probe_points`` can be given as
        ``upstream_features`` with ``feature_lengths`` ``(batch,)``: ``(batch, frames, sum of dims)``, the points
        concatenated along the features in that order (the CTC recipe's cache), ``(batch, points, frames, dim)``
        for points of one width, or a list of ``(batch, frames, dim_p)``. The upstream is then skipped (the CTC
        recipe trains frozen heads this way)."""
        if upstream_features is not None:
            if feature_lengths is None:
                raise ValueError("upstream_features needs feature_lengths (real frames per utterance)")
            points = (list(upstream_features) if isinstance(upstream_features, (list, tuple))
                      else self.split_features(upstream_features))
            if len(points) != len(self.weighted_probe_points):
                raise ValueError(f"upstream_features holds {len(points)} points; this model reads {self.weighted_probe_points}")
            features, frame_lengths = self._combine(points, feature_lengths)
        elif input_values is not None:
            features, frame_lengths = self._features(input_values, attention_mask)
        else:
            raise ValueError("UpstreamForCTC needs input_values (audio) or upstream_features")
        features = self._spec_augment(features)
        logits = self.head(features, frame_lengths)  # (B, T_out, V)
        output_lengths = self.head.output_lengths(frame_lengths).clamp(max=logits.shape[1])

        loss = metrics = None
        if labels is not None:
            if labels.max() >= self.config.vocab_size:
                raise ValueError(f"labels hold id {int(labels.max())} >= vocab_size {self.config.vocab_size}")
            label_mask = labels >= 0
            target_lengths = label_mask.sum(-1)
            too_long = (ctc_min_frames(labels) > output_lengths).sum()
            log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # (T_out, B, V)
            with torch.backends.cudnn.flags(enabled=False):  # cudnn's CTC has extra constraints on lengths
                loss = F.ctc_loss(
                    log_probs, labels.masked_select(label_mask), output_lengths, target_lengths,
                    blank=self.config.pad_token_id, reduction=self.config.ctc_loss_reduction,
                    zero_infinity=self.config.ctc_zero_infinity,
                )
            metrics = {"ctc_loss": loss.detach(), "too_long": too_long.detach()}
        return UpstreamCTCOutput(loss=loss, logits=logits, output_lengths=output_lengths, metrics=metrics)


def _module_key(probe_point: str) -> str:
    """A probe point's name as a ``ModuleDict`` key (which may not hold a dot)."""
    return probe_point.replace(".", "_")
