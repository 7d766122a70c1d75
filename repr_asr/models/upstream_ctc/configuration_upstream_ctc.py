"""Configuration of the downstream CTC model: any upstream + a small CTC head."""

from __future__ import annotations

from typing import Optional, Union

from transformers import AutoConfig, PreTrainedConfig

HEAD_TYPES = ("linear", "bilstm")


class UpstreamForCTCConfig(PreTrainedConfig):
    r"""An upstream (nested, so one folder rebuilds everything) with a CTC head on its features.

    Args:
        upstream_config (`dict`, defaults to `{"model_type": "spectral", "input_features": "fbank"}`): the
            upstream's ``config.to_dict()``, including its ``model_type``; a ``PreTrainedConfig`` is accepted
            and stored as its dict. `None` gives the default: filterbanks, the no-pretraining baseline.
        vocab_size (`int`, defaults to `32`): number of CTC output units, blank included.
        pad_token_id (`int`, defaults to `0`): the padding token, which is also the CTC blank.
        probe_point (`str`, defaults to `None`): the upstream probe point whose features the head reads;
            `None` means the upstream's ``default_probe_point``.
        weighted_sum (`bool`, defaults to `False`): feed the head a learned mix of probe points instead of one
            point (SUPERB's weighted sum, as s3prl's featurizer computes it): every probe point at the frame
            rate of ``probe_point`` (points at other rates are left out, named in the log and in
            ``results.json``), each layer-normed over its features without affine parameters, points whose
            width differs from the common width (``weighted_sum_dim``) mapped to it by a learned linear map
            (no bias), then summed with learned softmax weights whose logits start at zero (a uniform mix).
            The points are ``UpstreamForCTC.weighted_probe_points``, their weights
            ``UpstreamForCTC.layer_mix_weights()``. Each frame is mixed on its own, so padding changes nothing.
        weighted_sum_dim (`int`, defaults to `None`): with ``weighted_sum``, the common width the points are
            mapped to (the head's input size); `None`: the width of ``probe_point``.
        freeze_upstream (`bool`, defaults to `True`): never train the upstream (features only); its
            parameters get no gradient and it stays in eval mode even while the model trains.
        freeze_upstream_steps (`int`, defaults to `0`): with ``freeze_upstream=False``, keep the upstream
            frozen (no gradient, eval mode) for the first N optimisation steps (``on_train_step``), so the
            randomly initialised head settles before gradients reach the upstream.
        upstream_lr_scale (`float`, defaults to `1.0`): learning-rate multiplier for the upstream's parameter
            group in ``parameter_groups()`` (fine-tuning usually wants < 1).
        upstream_mask_time_prob (`float`, defaults to `0.0`): a transformers speech encoder upstream
            (``HFEncoderUpstream``: Wav2Vec2, HuBERT, WavLM, data2vec-audio) fine-tuned: its own SpecAugment
            time masking (``mask_time_prob``), which its checkpoint holds at the pretraining value; 0 turns it
            off. Its conv feature encoder always stays frozen. Ignored for repr_asr's own upstreams.
        upstream_mask_feature_prob (`float`, defaults to `0.0`): likewise its ``mask_feature_prob``.
        upstream_layerdrop (`float`, defaults to `0.0`): likewise its ``layerdrop``.
        head_type (`str`, defaults to `"linear"`): `"linear"` (one projection per frame) or `"bilstm"`.
        head_hidden_size (`int`, defaults to `256`): BiLSTM units per direction.
        head_num_layers (`int`, defaults to `1`): BiLSTM layers (1 or 2).
        reduction_kernel (`int`, defaults to `8`): kernel of the output Conv1d when ``reduction_stride > 1``.
        reduction_stride (`int`, defaults to `1`): frame-rate reduction of the output layer; with N > 1 the
            output layer is a Conv1d(kernel ``reduction_kernel``, stride N) as in Libri-light's letter
            baseline (BiLSTM → Conv1d(8, stride 4)). Output frames per utterance: ``ceil(frames / N)``.
        time_mask_width (`int`, defaults to `0`): SpecAugment on the features in training only: maximum width
            (frames) of each time mask; 0 disables time masking.
        time_mask_count (`int`, defaults to `2`): number of time masks per utterance.
        feature_mask_width (`int`, defaults to `0`): maximum width (dims) of each feature mask; 0 disables it.
        feature_mask_count (`int`, defaults to `2`): number of feature masks per utterance.
        dropout (`float`, defaults to `0.1`): dropout on the head's input and on the BiLSTM output.
        ctc_loss_reduction (`str`, defaults to `"mean"`): torch ``ctc_loss`` reduction: `"mean"` (each
            utterance's loss divided by its label length, then averaged) or `"sum"`.
        ctc_zero_infinity (`bool`, defaults to `True`): zero the loss of utterances whose labels cannot fit
            their frames (they are counted in ``metrics["too_long"]``).
    """

    model_type = "upstream_ctc"

    def __init__(
        self,
        upstream_config: Optional[Union[dict, PreTrainedConfig]] = None,
        vocab_size: int = 32,
        pad_token_id: int = 0,
        probe_point: Optional[str] = None,
        weighted_sum: bool = False,
        weighted_sum_dim: Optional[int] = None,
        freeze_upstream: bool = True,
        freeze_upstream_steps: int = 0,
        upstream_lr_scale: float = 1.0,
        upstream_mask_time_prob: float = 0.0,
        upstream_mask_feature_prob: float = 0.0,
        upstream_layerdrop: float = 0.0,
        head_type: str = "linear",
        head_hidden_size: int = 256,
        head_num_layers: int = 1,
        reduction_kernel: int = 8,
        reduction_stride: int = 1,
        time_mask_width: int = 0,
        time_mask_count: int = 2,
        feature_mask_width: int = 0,
        feature_mask_count: int = 2,
        dropout: float = 0.1,
        ctc_loss_reduction: str = "mean",
        ctc_zero_infinity: bool = True,
        **kwargs,
    ):
        if upstream_config is None:
            upstream_config = {"model_type": "spectral", "input_features": "fbank"}
        elif isinstance(upstream_config, PreTrainedConfig):
            upstream_config = upstream_config.to_dict()
        self.upstream_config = dict(upstream_config)
        self.vocab_size = vocab_size
        self.probe_point = probe_point
        self.weighted_sum = weighted_sum
        self.weighted_sum_dim = weighted_sum_dim
        self.freeze_upstream = freeze_upstream
        self.freeze_upstream_steps = freeze_upstream_steps
        self.upstream_lr_scale = upstream_lr_scale
        self.upstream_mask_time_prob = upstream_mask_time_prob
        self.upstream_mask_feature_prob = upstream_mask_feature_prob
        self.upstream_layerdrop = upstream_layerdrop
        self.head_type = head_type
        self.head_hidden_size = head_hidden_size
        self.head_num_layers = head_num_layers
        self.reduction_kernel = reduction_kernel
        self.reduction_stride = reduction_stride
        self.time_mask_width = time_mask_width
        self.time_mask_count = time_mask_count
        self.feature_mask_width = feature_mask_width
        self.feature_mask_count = feature_mask_count
        self.dropout = dropout
        self.ctc_loss_reduction = ctc_loss_reduction
        self.ctc_zero_infinity = ctc_zero_infinity
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.validate_head()

    def validate_head(self) -> None:
        """Say in words what is wrong with the head's settings."""
        problems = []
        if "model_type" not in self.upstream_config:
            problems.append("upstream_config must hold the upstream's 'model_type'")
        if self.head_type not in HEAD_TYPES:
            problems.append(f"head_type must be one of {HEAD_TYPES}, got {self.head_type!r}")
        if self.head_type == "bilstm" and self.head_num_layers not in (1, 2):
            problems.append(f"head_num_layers must be 1 or 2 for a BiLSTM head, got {self.head_num_layers}")
        if self.reduction_stride < 1:
            problems.append(f"reduction_stride must be >= 1, got {self.reduction_stride}")
        if self.reduction_stride > 1 and self.reduction_kernel < self.reduction_stride:
            problems.append(
                f"reduction_kernel ({self.reduction_kernel}) must be >= reduction_stride ({self.reduction_stride}) "
                "or some frames would never be seen"
            )
        if self.vocab_size < 2:
            problems.append(f"vocab_size must be >= 2 (blank + one unit), got {self.vocab_size}")
        if self.pad_token_id is None or not 0 <= self.pad_token_id < self.vocab_size:
            problems.append(f"pad_token_id (the CTC blank) must be in [0, vocab_size), got {self.pad_token_id}")
        if self.ctc_loss_reduction not in ("mean", "sum"):
            problems.append(f"ctc_loss_reduction must be 'mean' or 'sum', got {self.ctc_loss_reduction!r}")
        if self.weighted_sum_dim is not None and (type(self.weighted_sum_dim) is not int or self.weighted_sum_dim < 1):
            problems.append(f"weighted_sum_dim must be a positive integer or None, got {self.weighted_sum_dim!r}")
        if self.freeze_upstream_steps < 0:
            problems.append(f"freeze_upstream_steps must be >= 0, got {self.freeze_upstream_steps}")
        if min(self.time_mask_width, self.feature_mask_width, self.time_mask_count, self.feature_mask_count) < 0:
            problems.append("mask widths and counts must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("upstream_mask_time_prob", "upstream_mask_feature_prob", "upstream_layerdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if problems:
            raise ValueError("UpstreamForCTCConfig: " + "; ".join(problems))

    def build_upstream_config(self) -> PreTrainedConfig:
        """The nested upstream's config object (ours are registered with ``AutoConfig`` by
        :mod:`repr_asr.models.auto`, which the ``repr_asr.models`` package imports before this module)."""
        fields = dict(self.upstream_config)
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
