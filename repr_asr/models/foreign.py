"""Upstreams that are not repr_asr's own: any torch module, and transformers' speech encoders.

Downstream code (the CTC head, probes, ABX, feature extraction and export) reads an upstream only through
:class:`~repr_asr.models.upstream.UpstreamMixin`: named probe points with their dimensions and frame
rates, frame lengths from sample lengths, and a ``forward`` returning an
:class:`~repr_asr.models.upstream.UpstreamOutput`. This module gives that interface to

* :class:`WrappedUpstream`: any ``torch.nn.Module`` that maps a waveform batch ``(batch, samples)`` at
  16 kHz to a list of hidden states ``(batch, frames, dim)``;
* :class:`HFEncoderUpstream`: transformers' speech encoders with a wav2vec2-style convolutional feature
  encoder (:data:`ENCODER_MODEL_TYPES`: Wav2Vec2, HuBERT, WavLM, data2vec-audio), from their ``*Model``,
  ``*ForCTC`` or ``*ForPreTraining`` checkpoints. ``repr_asr.models.resolve_upstream`` wraps such folders.

Padding never changes a feature: a padded batch gives each utterance what it gets alone. A module that
cannot ignore padding is run on each group of equal-length utterances without padding (one utterance at
a time when all lengths differ); one that can (``takes_attention_mask``) is given the attention mask.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn
from transformers.utils import can_return_tuple

from ..modules.masking import lengths_from_mask
from .upstream import UpstreamMixin, UpstreamOutput

logger = logging.getLogger(__name__)

# transformers model types whose base model HFEncoderUpstream runs (conv feature encoder + Transformer).
ENCODER_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
# Of these, the ones whose real frames padding cannot reach once the attention mask is given, provided
# the conv feature encoder normalises each frame alone (feat_extract_norm "layer"; "group" normalises
# over time, padding included). data2vec-audio's positional embedding is a stack of convolutions whose
# later layers see the earlier ones' outputs at padded frames, so it always runs without padding.
_MASK_SAFE_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
# The model's own SpecAugment and LayerDrop: pretraining settings, off while repr_asr fine-tunes unless
# the CTC config turns them on (UpstreamForCTCConfig.upstream_*).
FINE_TUNING_OPTIONS = ("mask_time_prob", "mask_feature_prob", "layerdrop")
# In the config dict of a WrappedUpstream around an arbitrary module (which no config can rebuild).
WRAPPED_MARKER = "wrapped_upstream"

FrameLengths = Union[None, Callable[[torch.Tensor], torch.Tensor], Sequence[Sequence[int]]]


class UpstreamError(ValueError):
    """An upstream repr_asr cannot run: the message says what is missing and what is supported."""


class UpstreamFolderError(UpstreamError, FileNotFoundError):
    """An upstream path that is missing, or a folder that is not a ``save_pretrained`` folder."""


def supported_upstreams_text() -> str:
    """What ``--upstream`` accepts, in words (the end of every refusal)."""
    from .auto import upstream_model_types  # not at the top: auto imports the CTC model, which imports this module

    ours = upstream_model_types()
    return (f"supported: 'fbank' / 'mfcc', repr_asr's own upstreams (model_type {', '.join(ours)}), and transformers "
            f"speech encoders with a wav2vec2-style conv feature encoder (model_type {', '.join(ENCODER_MODEL_TYPES)}: "
            f"their *Model, *ForCTC or *ForPreTraining checkpoints); any other torch module can be wrapped in "
            f"repr_asr.models.foreign.WrappedUpstream")


def conv_frame_lengths(sample_lengths: torch.Tensor, layers: Sequence[Sequence[int]]) -> torch.Tensor:
    """Frames after a stack of 1-D convolutions ``layers`` = ``[(kernel, stride), ...]`` or ``[(kernel,
    stride, padding), ...]`` for ``(batch,)`` sample counts (0 when an input is shorter than the receptive field)."""
    lengths = sample_lengths.long()
    for layer in layers:
        kernel, stride = int(layer[0]), int(layer[1])
        padding = int(layer[2]) if len(layer) > 2 else 0
        lengths = torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1
        lengths = lengths.clamp(min=0)
    return lengths


class UpstreamConfig:
    """What downstream code reads from ``upstream.config`` of a :class:`WrappedUpstream`: ``probe_points``,
    ``default_probe_point``, ``sampling_rate``, ``model_type``, ``name_or_path`` and ``to_dict()`` (hashed
    into feature-cache keys, nested into a CTC model's config).

    With ``base`` (a transformers config) every other attribute is the base's, and ``to_dict()`` is the
    base's as it was loaded (the fine-tuning overrides of :data:`FINE_TUNING_OPTIONS` left out): what
    rebuilds the model with ``AutoConfig.for_model`` + ``AutoModel.from_config``.
    """

    def __init__(self, probe_points: Sequence[str], default_probe_point: str, sampling_rate: int = 16000,
                 model_type: str = "wrapped", name_or_path: str = "", settings: Optional[dict] = None, base=None):
        self.probe_points = list(probe_points)
        self.default_probe_point = default_probe_point
        self.sampling_rate = int(sampling_rate)
        self.settings = dict(settings or {})
        self.base = base
        self.loaded_values: dict = {}  # base fields changed for fine-tuning → their loaded values
        self._model_type = model_type
        self._name_or_path = name_or_path
        if base is None:
            # transformers' configs default; forward's @can_return_tuple reads it (with a base: the base's).
            self.return_dict = True

    def __getattr__(self, name):
        # Only reached for attributes not set above: the base config's (hidden_size, conv_stride, ...).
        base = self.__dict__.get("base")
        if base is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(base, name)

    @property
    def model_type(self) -> str:
        return self.base.model_type if self.base is not None else self._model_type

    @property
    def name_or_path(self) -> str:
        return str(self.base.name_or_path or "") if self.base is not None else self._name_or_path

    def to_dict(self) -> dict:
        if self.base is not None:
            return {**self.base.to_dict(), **self.loaded_values}
        return {"model_type": self._model_type, WRAPPED_MARKER: True, "probe_points": self.probe_points,
                "default_probe_point": self.default_probe_point, "sampling_rate": self.sampling_rate, **self.settings}


class WrappedUpstream(UpstreamMixin, nn.Module):
    """Any ``torch.nn.Module`` mapping a padded waveform batch to hidden states, as a repr_asr upstream
    (probes, ABX, feature export, and ``UpstreamForCTC`` in memory).

    Args:
        module: called as ``module(input_values)`` (or ``module(input_values, attention_mask=mask)`` with
            ``takes_attention_mask``) on ``(batch, samples)`` float waveforms at ``sampling_rate``; returns
            a list / tuple of ``(batch, frames, dim)`` tensors, one per probe point, all at one frame rate
            (a single tensor is one probe point).
        samples_per_frame: the frame step in input samples (320 for 50 frames per second at 16 kHz).
        frame_lengths: real frames for ``(batch,)`` real sample counts: a function of that tensor, or the
            module's convolution stack ``[(kernel, stride), ...]`` (or ``(kernel, stride, padding)``);
            ``None``: ``samples // samples_per_frame``.
        probe_points: names of the module's outputs, in order; ``None``: ``layer_0`` ... ``layer_{N-1}``.
        dims: each probe point's dimension (an int for all, or a list in order); ``None``: found by running
            the module once on one second of silence (as are the number of probe points when they are not named).
        default_probe_point: the point ``last_hidden_state`` and the CTC head use by default; ``None``:
            the last one.
        sampling_rate: input sampling rate in Hz.
        takes_attention_mask: ``True`` when the module takes ``attention_mask=`` and padding then never
            reaches its real frames; ``False`` (the safe default): each group of equal-length utterances
            runs on its real samples only, without padding, and the outputs are padded with zeros.
        name: the ``model_type`` reported in results (``upstream.config.model_type``).

    Example:
        >>> import torch
        >>> from repr_asr.models.foreign import WrappedUpstream
        >>> class Frames(torch.nn.Module):  # 20 ms frames of 320 samples, two "layers"
        ...     def forward(self, wave):
        ...         frames = wave[:, : wave.shape[1] // 320 * 320].unflatten(1, (-1, 320))
        ...         return [frames, frames.abs()]
        >>> upstream = WrappedUpstream(Frames(), samples_per_frame=320)
        >>> upstream.probe_points, upstream.probe_dims()["layer_1"], upstream.frame_rate()
        (['layer_0', 'layer_1'], 320, 50.0)
        >>> upstream(torch.zeros(2, 16000), output_hidden_states=True).hidden_states[1].shape
        torch.Size([2, 50, 320])
    """

    def __init__(
        self,
        module: nn.Module,
        samples_per_frame: int,
        frame_lengths: FrameLengths = None,
        probe_points: Optional[Sequence[str]] = None,
        dims: Union[None, int, Sequence[int]] = None,
        default_probe_point: Optional[str] = None,
        sampling_rate: int = 16000,
        takes_attention_mask: bool = False,
        name: str = "wrapped",
    ):
        super().__init__()
        self.module = module
        self.takes_attention_mask = bool(takes_attention_mask)
        if int(samples_per_frame) < 1:
            raise UpstreamError(f"samples_per_frame must be >= 1, got {samples_per_frame}")
        self.frame_step = int(samples_per_frame)
        self.conv_layers = None
        self.frame_length_fn = None
        if callable(frame_lengths):
            self.frame_length_fn = frame_lengths
        elif frame_lengths is not None:
            self.conv_layers = [tuple(int(v) for v in layer) for layer in frame_lengths]
        if probe_points is None or dims is None:
            found = self._dry_run_dims(sampling_rate)
            probe_points = list(probe_points) if probe_points is not None else [f"layer_{i}" for i in range(len(found))]
            dims = found if dims is None else dims
        probe_points = list(probe_points)
        dims = [int(dims)] * len(probe_points) if isinstance(dims, int) else [int(d) for d in dims]
        if len(dims) != len(probe_points) or len(set(probe_points)) != len(probe_points):
            raise UpstreamError(f"{len(probe_points)} probe points {probe_points} (unique names) need as many dims, got {dims}")
        self.dims = dict(zip(probe_points, dims))
        default_probe_point = default_probe_point or probe_points[-1]
        if default_probe_point not in probe_points:
            raise UpstreamError(f"default_probe_point {default_probe_point!r} is not one of {probe_points}")
        settings = {"samples_per_frame": self.frame_step, "conv_layers": self.conv_layers, "dims": dims,
                    "takes_attention_mask": self.takes_attention_mask}
        self.config = UpstreamConfig(probe_points, default_probe_point, sampling_rate, model_type=name, settings=settings)

    @property
    def name_or_path(self) -> str:
        return self.config.name_or_path

    def _dry_run_dims(self, sampling_rate: int) -> list[int]:
        parameter = next(iter(self.module.parameters()), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                states = self.run_module(torch.zeros(1, int(sampling_rate), device=device), None)
        finally:
            self.module.train(was_training)
        return [int(s.shape[-1]) for s in states]

    # ------------------------------------------------------------------ the upstream interface

    def probe_dims(self) -> dict:
        return dict(self.dims)

    def probe_samples_per_frame(self) -> dict:
        return {p: self.frame_step for p in self.config.probe_points}

    def frame_lengths_at(self, sample_lengths: torch.Tensor, probe_point: str) -> torch.Tensor:
        self.check_probe_point(probe_point)
        sample_lengths = torch.as_tensor(sample_lengths)
        if self.frame_length_fn is not None:
            return torch.as_tensor(self.frame_length_fn(sample_lengths)).long().clamp(min=0)
        if self.conv_layers is not None:
            return conv_frame_lengths(sample_lengths, self.conv_layers)
        return torch.div(sample_lengths.long(), self.frame_step, rounding_mode="floor")

    # ------------------------------------------------------------------ running the module

    def run_module(self, input_values: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> list[torch.Tensor]:
        """The module's hidden states, one ``(batch, frames, dim)`` tensor per probe point, in order."""
        out = self.module(input_values) if attention_mask is None else self.module(input_values, attention_mask=attention_mask)
        if isinstance(out, torch.Tensor):
            return [out]
        if not isinstance(out, (list, tuple)):
            raise TypeError(f"{type(self.module).__name__} returned {type(out).__name__}; WrappedUpstream needs a "
                            "list or tuple of (batch, frames, dim) tensors")
        return list(out)

    def _run_by_length(self, input_values: torch.Tensor, sample_lengths: torch.Tensor) -> list[torch.Tensor]:
        """Each group of equal-length utterances without padding; outputs zero-padded to the batch's frames."""
        batch, samples = input_values.shape
        frames = int(self.frame_lengths_at(torch.tensor([samples]), self.default_probe_point)[0])
        rows, outputs = [], []
        for length in sorted(set(sample_lengths.tolist())):
            group = (sample_lengths == length).nonzero().squeeze(1)
            rows.append(group)
            if int(self.frame_lengths_at(torch.tensor([length]), self.default_probe_point)[0]) < 1:
                outputs.append(None)  # shorter than the receptive field: no frame at all
                continue
            outputs.append(self.run_module(input_values[group, :length], None))
        known = next((o for o in outputs if o is not None), None)
        if known is None:  # no utterance long enough for a frame
            return [input_values.new_zeros(batch, frames, self.dims[p]) for p in self.config.probe_points]
        frames = max([frames] + [s.shape[1] for o in outputs if o is not None for s in o])
        order = torch.cat(rows).to(input_values.device)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(batch, device=order.device)
        states = []
        for index, like in enumerate(known):
            pieces = []
            for group, out in zip(rows, outputs):
                if out is None:
                    pieces.append(like.new_zeros(len(group), frames, like.shape[-1]))
                else:
                    piece = out[index]
                    pieces.append(nn.functional.pad(piece, (0, 0, 0, frames - piece.shape[1])))
            states.append(torch.cat(pieces).index_select(0, inverse))
        return states

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
        **kwargs,
    ) -> UpstreamOutput:
        """``input_values`` ``(batch, samples)``, ``attention_mask`` ``(batch, samples)`` (1 at real samples)
        → :class:`UpstreamOutput` (``hidden_states`` in ``probe_points`` order with ``output_hidden_states``)."""
        if input_values.dim() != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}")
        sample_lengths = lengths_from_mask(attention_mask, input_values)
        padded = attention_mask is not None and bool((sample_lengths < input_values.shape[-1]).any())
        if not padded:
            states = self.run_module(input_values, attention_mask if self.takes_attention_mask else None)
        elif self.takes_attention_mask:
            states = self.run_module(input_values, attention_mask)
        else:
            states = self._run_by_length(input_values, sample_lengths)
        if len(states) != len(self.config.probe_points):
            raise ValueError(f"{type(self.module).__name__} returned {len(states)} hidden states for "
                             f"{len(self.config.probe_points)} probe points {self.config.probe_points}")
        probes = dict(zip(self.config.probe_points, states))
        frame_lengths = self.frame_lengths_at(sample_lengths, self.default_probe_point).to(sample_lengths.device)
        return self.upstream_output(probes, frame_lengths, output_hidden_states)


class HFEncoderUpstream(WrappedUpstream):
    """A transformers speech encoder with a wav2vec2-style conv feature encoder (:data:`ENCODER_MODEL_TYPES`)
    as a repr_asr upstream.

    Args:
        model: a ``Wav2Vec2Model`` / ``HubertModel`` / ``WavLMModel`` / ``Data2VecAudioModel``, or one of
            their ``*ForCTC`` / ``*ForPreTraining`` / other head models, whose ``base_model`` is taken (the
            head is dropped).
        sampling_rate: input sampling rate in Hz (these models are trained at 16 kHz).
        default_probe_point: ``None``: the last layer, ``layer_N``.

    Probe points: ``layer_0`` is the Transformer's input (the feature projection of the conv features plus
    the positional convolution, as ``hidden_states[0]`` of ``output_hidden_states=True``), ``layer_i`` the
    output of Transformer layer ``i``, and ``layer_N`` the encoder's output (with the final layer norm of
    pre-norm models, i.e. ``last_hidden_state`` without an adapter): what the model's own CTC head reads,
    hence the default. Frozen, a middle layer often probes better (choose with ``probe_point`` or
    ``weighted_sum``). Every point has ``hidden_size`` dims at ``sampling_rate / prod(conv_stride)`` frames
    per second (50 Hz for the released models); frame lengths follow the conv stack
    (``conv_kernel``, ``conv_stride``) exactly as the model computes them.

    Padding: models whose conv feature encoder normalises over time (``feat_extract_norm == "group"``,
    e.g. wav2vec2-base, HuBERT base, WavLM base; their feature extractors have
    ``return_attention_mask=False``) and data2vec-audio run without padding, each group of equal-length
    utterances apart; the others get the attention mask. Either way a padded batch gives each utterance
    what it gets alone (within float tolerance).

    Fine-tuning (:meth:`configure_fine_tuning`, called by ``UpstreamForCTC``): the conv feature encoder
    stays frozen and the model's own SpecAugment and LayerDrop are off unless turned on.
    """

    def __init__(self, model: nn.Module, sampling_rate: int = 16000, default_probe_point: Optional[str] = None):
        base = getattr(model, "base_model", model)
        config = getattr(base, "config", None)
        model_type = getattr(config, "model_type", None)
        if model_type not in ENCODER_MODEL_TYPES:
            raise UpstreamError(f"{type(model).__name__} (model_type {model_type!r}) is not a speech encoder HFEncoderUpstream "
                                f"can run; {supported_upstreams_text()}")
        conv = list(zip(config.conv_kernel, config.conv_stride))
        layers = int(config.num_hidden_layers)
        takes_mask = model_type in _MASK_SAFE_MODEL_TYPES and getattr(config, "feat_extract_norm", "layer") == "layer"
        super().__init__(
            base, samples_per_frame=math.prod(int(s) for s in config.conv_stride), frame_lengths=conv,
            probe_points=[f"layer_{i}" for i in range(layers + 1)], dims=int(config.hidden_size),
            default_probe_point=default_probe_point, sampling_rate=sampling_rate, takes_attention_mask=takes_mask,
            name=model_type,
        )
        self.config = UpstreamConfig(self.config.probe_points, self.config.default_probe_point, sampling_rate, base=config)
        self.feature_encoder_frozen = False

    def run_module(self, input_values: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> list[torch.Tensor]:
        """The Transformer's input to each layer and the encoder's output, recorded by hooks: with LayerDrop
        a skipped layer passes its input on, so every probe point is defined whichever layers ran."""
        layers = list(self.module.encoder.layers)
        inputs: dict[int, torch.Tensor] = {}
        final: list[torch.Tensor] = []

        def record_input(index):
            def hook(_module, args, kwargs):
                inputs[index] = args[0] if args else kwargs["hidden_states"]
            return hook

        def record_output(_module, _args, output):
            final.append(output[0])

        handles = [layer.register_forward_pre_hook(record_input(i), with_kwargs=True) for i, layer in enumerate(layers)]
        handles.append(self.module.encoder.register_forward_hook(record_output))
        try:
            self.module(input_values, attention_mask=attention_mask)
        finally:
            for handle in handles:
                handle.remove()
        states = []
        for i in range(len(layers)):
            # The input to layer i is the input of the first layer from i on that ran (skipped ones pass it on).
            ran = next((j for j in range(i, len(layers)) if j in inputs), None)
            states.append(inputs[ran] if ran is not None else final[0])
        return states + [final[0]]

    def configure_fine_tuning(self, mask_time_prob: float = 0.0, mask_feature_prob: float = 0.0,
                              layerdrop: float = 0.0) -> None:
        """Before fine-tuning: freeze the conv feature encoder (as every wav2vec2-family recipe does) and set
        the model's own SpecAugment (``mask_time_prob``, ``mask_feature_prob``) and ``layerdrop``, which
        the checkpoint's config holds at their pretraining values. ``config.to_dict()`` keeps reporting the
        loaded values (what rebuilds the same modules)."""
        base = self.config.base
        wanted = {"mask_time_prob": float(mask_time_prob), "mask_feature_prob": float(mask_feature_prob),
                  "layerdrop": float(layerdrop)}
        if (wanted["mask_time_prob"] > 0 or wanted["mask_feature_prob"] > 0) and getattr(self.module, "masked_spec_embed", None) is None:
            raise UpstreamError(f"{self.config.model_type}: SpecAugment inside the model (mask_time_prob / mask_feature_prob > 0) "
                                "needs its masked_spec_embed, which this checkpoint lacks (it was saved with both at 0); "
                                "use the CTC head's time_mask_width / feature_mask_width instead")
        for name, value in wanted.items():
            if name not in self.config.loaded_values:
                self.config.loaded_values[name] = getattr(base, name)
            setattr(base, name, value)
        self.module.feature_extractor.requires_grad_(False)
        self.feature_encoder_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.feature_encoder_frozen:
            # A frozen conv stack has no dropout and per-call norms: eval mode computes the same, and keeps
            # transformers from asking for a gradient of the input through it.
            self.module.feature_extractor.eval()
        return self


def wrap_transformers_model(model: nn.Module, sampling_rate: int = 16000) -> nn.Module:
    """``model`` itself when it is already an upstream (repr_asr's own, or wrapped), else an
    :class:`HFEncoderUpstream` around it; anything else raises :class:`UpstreamError`."""
    if isinstance(model, UpstreamMixin):
        return model
    return HFEncoderUpstream(model, sampling_rate=sampling_rate)


def upstream_from_config(ctc_config) -> nn.Module:
    """A freshly initialised upstream for an ``UpstreamForCTCConfig``'s nested ``upstream_config`` (one of
    ours, or a transformers encoder's config, then wrapped): what ``UpstreamForCTC`` rebuilds."""
    from transformers import AutoModel

    if ctc_config.upstream_config.get(WRAPPED_MARKER):
        raise UpstreamError(
            f"the upstream is a WrappedUpstream around an arbitrary module "
            f"({ctc_config.upstream_config.get('model_type')!r}), which no config can rebuild: a CTC model over it "
            f"works in memory (UpstreamForCTC.from_upstream) but cannot be reloaded from a folder"
        )
    return wrap_transformers_model(AutoModel.from_config(ctc_config.build_upstream_config()))


def default_feature_extractor_for(config: dict):
    """A ``Wav2Vec2FeatureExtractor`` for a transformers encoder saved without one, set as the released
    checkpoints' are: per-utterance normalisation (``do_normalize``; a group-norm conv stack without conv
    biases is blind to it anyway) and the attention mask exactly when the conv feature encoder normalises
    each frame alone (``feat_extract_norm == "layer"``; data2vec-audio always)."""
    from transformers import Wav2Vec2FeatureExtractor

    layer_norm = config.get("model_type") == "data2vec-audio" or config.get("feat_extract_norm", "group") == "layer"
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                    return_attention_mask=layer_norm)
