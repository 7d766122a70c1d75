"""Configuration of the CPC baseline (modified CPC, Rivière et al. 2020, facebookresearch/CPC_audio)."""

from __future__ import annotations

from transformers import PreTrainedConfig

CPC_PROBE_POINTS = ("enc", "ctx")
CONTEXT_TYPES = ("lstm", "gru")
NEGATIVE_SAMPLING = ("utterance", "speaker", "batch")
CONV_NORMS = ("channel", "none")
PREDICTOR_TYPES = ("linear", "transformer")


class CPCConfig(PreTrainedConfig):
    r"""Contrastive predictive coding on the raw waveform: strided conv encoder, causal recurrent context,
    InfoNCE over future encoder frames ("modified CPC", arXiv 2002.02848; code: facebookresearch/CPC_audio).

    Args:
        sampling_rate (`int`, defaults to `16000`): input sample rate.
        conv_kernel (`list[int]`, defaults to `[10, 8, 4, 4, 4]`): kernel size of each encoder conv layer.
        conv_stride (`list[int]`, defaults to `[5, 4, 2, 2, 2]`): stride of each encoder conv layer; their
            product (160) is the samples per frame of both probe points (100 Hz at 16 kHz).
        conv_padding (`list[int]`, defaults to `[3, 2, 1, 1, 1]`): zero padding on both sides of each layer's
            input; with the defaults a crop of `n * 160` samples gives exactly `n` frames.
        conv_dim (`int`, defaults to `256`): channels of every encoder layer (the dimension of probe `"enc"`).
        conv_norm (`str`, defaults to `"channel"`): `"channel"` normalises each frame over its channels
            (CPC_audio's ChannelNorm: one frame's statistics only, so padding never changes a real frame),
            `"none"` skips normalisation.
        context_type (`str`, defaults to `"lstm"`): the causal context network, `"lstm"` or `"gru"`.
        context_layers (`int`, defaults to `1`): recurrent layers of the context network.
        context_hidden_size (`int`, defaults to `256`): its hidden size (the dimension of probe `"ctx"`).
        prediction_steps (`int`, defaults to `12`): K, the future frames predicted from each context frame,
            one linear predictor per step.
        num_negatives (`int`, defaults to `128`): negatives per context frame, shared by the K steps.
        negative_sampling (`str`, defaults to `"speaker"`): where negatives come from, always real frames
            only: `"utterance"` (the same utterance), `"speaker"` (every utterance of the batch with the same
            `speaker_ids` entry; an utterance with no or a negative speaker id samples from itself), or
            `"batch"` (every utterance of the batch).
        predictor_type (`str`, defaults to `"linear"`): the predictor of each step: `"linear"` (W_k c_t, as in
            CPC 2018) or `"transformer"` (modified CPC: per step, one causally masked transformer layer over the
            context frames, then a linear map to `conv_dim`).
        predictor_heads (`int`, defaults to `8`): attention heads of each transformer predictor; must divide
            `context_hidden_size`.
        predictor_ffn_dim (`int`, defaults to `1024`): feed-forward size of each transformer predictor.
        predictor_dropout (`float`, defaults to `0.0`): dropout on the context frames fed to the predictors
            (and inside the transformer predictors).
        probe_points (`list[str]`, defaults to `["enc", "ctx"]`): probe points returned in `hidden_states`,
            in this order; any ordering of a subset of `"enc"` and `"ctx"`.
        default_probe_point (`str`, defaults to `"ctx"`): the probe point of `last_hidden_state`.

    Example:
        >>> from repr_asr import CPCConfig
        >>> config = CPCConfig(conv_dim=32, context_hidden_size=32, prediction_steps=4, num_negatives=8)
        >>> config.samples_per_frame
        160
    """

    model_type = "cpc"

    def __init__(
        self,
        sampling_rate: int = 16000,
        conv_kernel: list | None = None,
        conv_stride: list | None = None,
        conv_padding: list | None = None,
        conv_dim: int = 256,
        conv_norm: str = "channel",
        context_type: str = "lstm",
        context_layers: int = 1,
        context_hidden_size: int = 256,
        prediction_steps: int = 12,
        num_negatives: int = 128,
        negative_sampling: str = "speaker",
        predictor_type: str = "linear",
        predictor_heads: int = 8,
        predictor_ffn_dim: int = 1024,
        predictor_dropout: float = 0.0,
        probe_points: list | None = None,
        default_probe_point: str = "ctx",
        **kwargs,
    ):
        self.sampling_rate = sampling_rate
        self.conv_kernel = list(conv_kernel) if conv_kernel is not None else [10, 8, 4, 4, 4]
        self.conv_stride = list(conv_stride) if conv_stride is not None else [5, 4, 2, 2, 2]
        self.conv_padding = list(conv_padding) if conv_padding is not None else [3, 2, 1, 1, 1]
        self.conv_dim = conv_dim
        self.conv_norm = conv_norm
        self.context_type = context_type
        self.context_layers = context_layers
        self.context_hidden_size = context_hidden_size
        self.prediction_steps = prediction_steps
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.predictor_type = predictor_type
        self.predictor_heads = predictor_heads
        self.predictor_ffn_dim = predictor_ffn_dim
        self.predictor_dropout = predictor_dropout
        self.probe_points = list(probe_points) if probe_points is not None else list(CPC_PROBE_POINTS)
        self.default_probe_point = default_probe_point
        super().__init__(**kwargs)
        self.validate_architecture()

    @property
    def samples_per_frame(self) -> int:
        """Input samples per encoder (and context) frame: the product of the strides."""
        product = 1
        for stride in self.conv_stride:
            product *= stride
        return product

    def validate_architecture(self):
        """Say in words what is wrong with this configuration (called on construction)."""

        def positive_int(name, value):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CPCConfig.{name} must be a positive integer, got {value!r}")

        layers = len(self.conv_kernel)
        if layers == 0:
            raise ValueError("CPCConfig.conv_kernel must name at least one conv layer, got []")
        for name in ("conv_stride", "conv_padding"):
            if len(getattr(self, name)) != layers:
                raise ValueError(
                    f"CPCConfig.{name} has {len(getattr(self, name))} entries but conv_kernel has {layers}: "
                    "give one kernel, stride and padding per encoder layer"
                )
        for i, (kernel, stride, padding) in enumerate(zip(self.conv_kernel, self.conv_stride, self.conv_padding)):
            positive_int(f"conv_kernel[{i}]", kernel)
            positive_int(f"conv_stride[{i}]", stride)
            if isinstance(padding, bool) or not isinstance(padding, int) or not 0 <= padding < kernel:
                raise ValueError(f"CPCConfig.conv_padding[{i}] must be an integer in [0, kernel {kernel}), got {padding!r}")
        for name in ("sampling_rate", "conv_dim", "context_layers", "context_hidden_size", "prediction_steps", "num_negatives", "predictor_heads", "predictor_ffn_dim"):
            positive_int(name, getattr(self, name))
        for name, allowed in (
            ("conv_norm", CONV_NORMS),
            ("context_type", CONTEXT_TYPES),
            ("negative_sampling", NEGATIVE_SAMPLING),
            ("predictor_type", PREDICTOR_TYPES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"CPCConfig.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.predictor_type == "transformer" and self.context_hidden_size % self.predictor_heads:
            raise ValueError(
                f"CPCConfig.predictor_heads ({self.predictor_heads}) must divide context_hidden_size "
                f"({self.context_hidden_size}) for predictor_type='transformer'"
            )
        if not 0.0 <= float(self.predictor_dropout) < 1.0:
            raise ValueError(f"CPCConfig.predictor_dropout must be in [0, 1), got {self.predictor_dropout!r}")
        if not self.probe_points or any(p not in CPC_PROBE_POINTS for p in self.probe_points):
            raise ValueError(f"CPCConfig.probe_points must be a non-empty list drawn from {list(CPC_PROBE_POINTS)}, got {self.probe_points!r}")
        if len(set(self.probe_points)) != len(self.probe_points):
            raise ValueError(f"CPCConfig.probe_points repeats a name: {self.probe_points!r}")
        if self.default_probe_point not in self.probe_points:
            raise ValueError(
                f"CPCConfig.default_probe_point {self.default_probe_point!r} is not one of probe_points {self.probe_points!r}"
            )
