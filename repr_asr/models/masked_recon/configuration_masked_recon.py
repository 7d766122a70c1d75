"""Configuration of the masked-reconstruction upstream (Mockingjay / TERA style)."""

from __future__ import annotations

from transformers import PreTrainedConfig

POSITION_EMBEDDINGS = ("sinusoidal", "learned")
RECONSTRUCTION_HEADS = ("linear", "mlp")
HIDDEN_ACTS = ("gelu", "relu")


class MaskedReconConfig(PreTrainedConfig):
    r"""A Transformer encoder over log-mel frames, pretrained by reconstructing masked input.

    Mockingjay (Liu et al. 2020, https://arxiv.org/abs/1910.12638) masks spans of frames and reconstructs
    them with an L1 loss; TERA (Liu et al. 2021, https://arxiv.org/abs/2007.06028) adds frequency-band
    masking and Gaussian noise. The defaults are TERA's "time + frequency + noise" setting on 80 log-mel
    bands at 100 Hz with the paper-scale 3 × 768 encoder; set `freq_mask_proportion=0` and
    `noise_proportion=0` (and `downsample_rate=3`) for Mockingjay.

    Front end:
        sampling_rate (`int`, defaults to `16000`): input sample rate.
        n_mels (`int`, defaults to `80`): log-mel bands (25 ms windows, 10 ms hop), normalised per utterance
            over its real frames.
        downsample_rate (`int`, defaults to `1`): consecutive frames stacked into one encoder frame
            (Mockingjay uses 3: 30 ms frames of `3 * n_mels` dims); the reconstruction target is the
            stacked frame.

    Encoder:
        hidden_size (`int`, defaults to `768`): width of the Transformer.
        num_hidden_layers (`int`, defaults to `3`): Transformer layers.
        num_attention_heads (`int`, defaults to `12`): attention heads; must divide `hidden_size`.
        intermediate_size (`int`, defaults to `3072`): width of the feed-forward block.
        hidden_act (`str`, defaults to `"gelu"`): `"gelu"` or `"relu"` in the feed-forward block and head.
        hidden_dropout (`float`, defaults to `0.1`): dropout on the input projection, the attention output
            and the feed-forward output.
        attention_dropout (`float`, defaults to `0.1`): dropout on the attention weights.
        layer_norm_eps (`float`, defaults to `1e-12`): LayerNorm epsilon (BERT's value, as in Mockingjay).
        pre_layer_norm (`bool`, defaults to `False`): `False` is BERT / Mockingjay post-LN (LayerNorm after
            each residual sum); `True` normalises before each block and adds a final LayerNorm, which is
            then part of the last layer's probe point.
        position_embedding (`str`, defaults to `"sinusoidal"`): `"sinusoidal"` (Mockingjay; no weights, any
            length) or `"learned"` (an embedding of `max_position_embeddings` rows).
        max_position_embeddings (`int`, defaults to `4096`): longest input, in encoder frames, for `"learned"`
            positions (4096 frames = 41 s at 100 Hz); unused for `"sinusoidal"`.
        initializer_range (`float`, defaults to `0.02`): std of the normal initialisation of linear layers.

    Masking (training only, i.e. `compute_loss=True`; never at feature extraction):
        mask_proportion (`float`, defaults to `0.15`): fraction of each utterance's real frames masked in time,
            as non-overlapping spans.
        mask_span (`int`, defaults to `7`): frames per time-masked span (Mockingjay: 7 at 10 ms).
        mask_zero_prob (`float`, defaults to `0.8`): probability a masked span is zeroed.
        mask_random_prob (`float`, defaults to `0.1`): probability a masked span is replaced by randomly drawn
            real frames of the same utterance; the rest (0.1) is left unchanged but still reconstructed.
        freq_mask_proportion (`float`, defaults to `0.2`): upper bound of the width, as a fraction of the
            `n_mels` bands, of the one contiguous band zeroed over every frame of an utterance; the width is
            drawn uniformly from `0 .. floor(freq_mask_proportion * n_mels)` (TERA). 0 disables it.
        noise_proportion (`float`, defaults to `0.15`): probability an utterance's input gets Gaussian noise
            (TERA). 0 disables it.
        noise_std (`float`, defaults to `0.2`): std of that noise (on the normalised features).

    Head and probes:
        reconstruction_head (`str`, defaults to `"mlp"`): `"mlp"` (linear, activation, LayerNorm, linear, as
            Mockingjay's prediction head) or `"linear"`; used only for the pretraining loss.
        probe_points (`list[str]`, defaults to `["input", "layer_1", "layer_2", "layer_3"]`): the input
            projection (with positions, LayerNorm) and each Transformer layer; when not given (`None`),
            `["input", "layer_1", ..., "layer_N"]` for `num_hidden_layers` N.
        default_probe_point (`str`, defaults to `"layer_3"`): when not given, the last entry of
            `probe_points` (the last layer by default).
    """

    model_type = "masked_recon"

    def __init__(
        self,
        sampling_rate: int = 16000,
        n_mels: int = 80,
        downsample_rate: int = 1,
        hidden_size: int = 768,
        num_hidden_layers: int = 3,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout: float = 0.1,
        attention_dropout: float = 0.1,
        layer_norm_eps: float = 1e-12,
        pre_layer_norm: bool = False,
        position_embedding: str = "sinusoidal",
        max_position_embeddings: int = 4096,
        initializer_range: float = 0.02,
        mask_proportion: float = 0.15,
        mask_span: int = 7,
        mask_zero_prob: float = 0.8,
        mask_random_prob: float = 0.1,
        freq_mask_proportion: float = 0.2,
        noise_proportion: float = 0.15,
        noise_std: float = 0.2,
        reconstruction_head: str = "mlp",
        probe_points: list | None = None,
        default_probe_point: str | None = None,
        **kwargs,
    ):
        self.sampling_rate = sampling_rate
        self.n_mels = n_mels
        self.downsample_rate = downsample_rate
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_eps = layer_norm_eps
        self.pre_layer_norm = pre_layer_norm
        self.position_embedding = position_embedding
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.mask_proportion = mask_proportion
        self.mask_span = mask_span
        self.mask_zero_prob = mask_zero_prob
        self.mask_random_prob = mask_random_prob
        self.freq_mask_proportion = freq_mask_proportion
        self.noise_proportion = noise_proportion
        self.noise_std = noise_std
        self.reconstruction_head = reconstruction_head
        layers = [f"layer_{i}" for i in range(1, num_hidden_layers + 1)] if isinstance(num_hidden_layers, int) else []
        self.probe_points = list(probe_points) if probe_points is not None else ["input", *layers]
        self.default_probe_point = default_probe_point if default_probe_point is not None else self.probe_points[-1]
        super().__init__(**kwargs)
        self.validate_architecture()

    @property
    def input_dim(self) -> int:
        """Dims of one (stacked) encoder input frame and of the reconstruction target."""
        return self.n_mels * self.downsample_rate

    def validate_architecture(self):
        """Check every field; raise a `ValueError` that names the field and what is wrong."""

        def fail(field, why):
            raise ValueError(f"MaskedReconConfig.{field} {why}, got {getattr(self, field)!r}")

        for field in ("sampling_rate", "n_mels", "downsample_rate", "hidden_size", "num_hidden_layers",
                      "num_attention_heads", "intermediate_size", "max_position_embeddings", "mask_span"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(field, "must be a positive integer")
        if self.hidden_size % self.num_attention_heads:
            fail("hidden_size", f"must be divisible by num_attention_heads ({self.num_attention_heads})")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            fail("position_embedding", f"must be one of {POSITION_EMBEDDINGS}")
        if self.position_embedding == "sinusoidal" and self.hidden_size % 2:
            fail("hidden_size", "must be even for sinusoidal position embeddings")
        if self.hidden_act not in HIDDEN_ACTS:
            fail("hidden_act", f"must be one of {HIDDEN_ACTS}")
        if self.reconstruction_head not in RECONSTRUCTION_HEADS:
            fail("reconstruction_head", f"must be one of {RECONSTRUCTION_HEADS}")
        for field in ("hidden_dropout", "attention_dropout", "mask_zero_prob", "mask_random_prob",
                      "noise_proportion"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                fail(field, "must lie in [0, 1]")
        if not 0.0 <= self.mask_proportion < 1.0:
            fail("mask_proportion", "must lie in [0, 1)")
        if not 0.0 <= self.freq_mask_proportion < 1.0:
            fail("freq_mask_proportion", "must lie in [0, 1)")
        if self.mask_zero_prob + self.mask_random_prob > 1.0 + 1e-9:
            fail("mask_random_prob", f"plus mask_zero_prob ({self.mask_zero_prob}) must not exceed 1")
        if self.noise_std < 0:
            fail("noise_std", "must be non-negative")
        for field in ("layer_norm_eps", "initializer_range"):
            if getattr(self, field) <= 0:
                fail(field, "must be positive")
        if not self.probe_points or len(set(self.probe_points)) != len(self.probe_points):
            fail("probe_points", "must be a non-empty list of distinct names")
        known = {"input", *(f"layer_{i}" for i in range(1, self.num_hidden_layers + 1))}
        unknown = [p for p in self.probe_points if p not in known]
        if unknown:
            fail("probe_points", f"has unknown names {unknown} (known: input, layer_1 .. layer_{self.num_hidden_layers})")
        if self.default_probe_point not in self.probe_points:
            fail("default_probe_point", f"must be one of probe_points {self.probe_points}")
