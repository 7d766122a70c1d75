"""Configuration of the supervised topline: a frame phone classifier trained with the pool's phone labels."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ...audio import SPECTRAL_FEATURES
from ...data.phones import PHONES


class ToplineConfig(PreTrainedConfig):
    r"""A stack of 1-D convolutions over log-mel (or MFCC) frames at 100 Hz that predicts each frame's phone.

    This is the table's *topline*, as ZeroSpeech reports supervised phone posteriors beside its MFCC
    baseline: it is trained with labels (the pretraining pool's phone alignments), so it is not a
    representation learned without supervision; its rows say how far labels take a representation at the
    same compute, and prove that the downstream harness can see a good one.

    Front end:
        input_features (`str`, defaults to `"fbank"`): `"fbank"` (log-mel) or `"mfcc"`, computed inside the
            model from 16 kHz audio (25 ms windows, 10 ms hop) and normalised per utterance over its real frames.
        sampling_rate (`int`, defaults to `16000`): input sample rate.
        n_mels (`int`, defaults to `80`): mel bands.
        n_mfcc (`int`, defaults to `13`): cepstra for `"mfcc"` (with deltas: `3 * n_mfcc` dims).

    Classifier:
        hidden_size (`int`, defaults to `256`): channels of every convolution.
        num_layers (`int`, defaults to `5`): convolution layers (`layer_1` … `layer_N`, the probe points).
        kernel_size (`int`, defaults to `5`): frames per convolution window.
        dilations (`list[int]`, defaults to `[1, 2, 3, 1, 1]`): dilation of each layer (repeated cyclically
            when shorter than `num_layers`); the receptive field is `1 + (kernel_size - 1) * sum(dilations)`
            frames.
        dropout (`float`, defaults to `0.1`): dropout after every layer (training only).
        label_smoothing (`float`, defaults to `0.0`): label smoothing of the frame cross-entropy.
        phones (`list[str]`, defaults to `["AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH", "SIL"]`):
            the output classes in id order, the 39 ARPAbet phones and silence
            (`repr_asr.data.phones.PHONES`); the pool's alignments are mapped onto them.

    Probe points:
        probe_points (`list[str]`, defaults to `["layer_1", "layer_2", "layer_3", "layer_4", "layer_5"]`): every
            hidden layer (`layer_1` … `layer_N` for `num_layers` N).
        default_probe_point (`str`, defaults to `"layer_5"`): the last of `probe_points` when not given; what CTC
            heads and ABX read by default.
    """

    model_type = "phone_topline"

    def __init__(
        self,
        input_features: str = "fbank",
        sampling_rate: int = 16000,
        n_mels: int = 80,
        n_mfcc: int = 13,
        hidden_size: int = 256,
        num_layers: int = 5,
        kernel_size: int = 5,
        dilations: list | None = None,
        dropout: float = 0.1,
        label_smoothing: float = 0.0,
        phones: list | None = None,
        probe_points: list | None = None,
        default_probe_point: str | None = None,
        **kwargs,
    ):
        if input_features not in SPECTRAL_FEATURES:
            raise ValueError(f"ToplineConfig.input_features must be 'fbank' or 'mfcc', got {input_features!r}")
        if num_layers < 1:
            raise ValueError(f"ToplineConfig.num_layers must be >= 1, got {num_layers}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ToplineConfig.kernel_size must be odd (a centred window), got {kernel_size}")
        self.input_features = input_features
        self.sampling_rate = sampling_rate
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.dilations = list(dilations or [1, 2, 3, 1, 1])
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"ToplineConfig.dilations must be >= 1, got {self.dilations}")
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.phones = list(phones or PHONES)
        layers = [f"layer_{i}" for i in range(1, num_layers + 1)]
        self.probe_points = list(probe_points or layers)
        unknown = sorted(set(self.probe_points) - set(layers))
        if unknown:
            raise ValueError(f"ToplineConfig.probe_points {unknown} are not layers of this model ({layers})")
        self.default_probe_point = default_probe_point or self.probe_points[-1]
        if self.default_probe_point not in self.probe_points:
            raise ValueError(f"ToplineConfig.default_probe_point {self.default_probe_point!r} is not one of {self.probe_points}")
        super().__init__(**kwargs)

    @property
    def layer_dilations(self) -> list[int]:
        return [self.dilations[i % len(self.dilations)] for i in range(self.num_layers)]
