"""Configuration of the WaveNet autoencoder (Chorowski, Weiss, Bengio, van den Oord 2019, arXiv:1901.08810)."""

from __future__ import annotations

from transformers import PreTrainedConfig

WAVENET_AE_PROBE_POINTS = ("enc", "proj", "bn", "cond")
BOTTLENECKS = ("none", "vae", "vq")


class WaveNetAEConfig(PreTrainedConfig):
    r"""WaveNet autoencoder: conv encoder on MFCC / filterbanks / waveform → bottleneck → conditioning
    → WaveNet decoder over 256 mu-law classes. Defaults are the paper's scale (MFCC, 768-unit encoder,
    64-d latents at 50 Hz, VQ with 256 codes, 20-layer WaveNet).

    Args:
        input_features (`str`, defaults to `"mfcc"`): encoder input computed inside the model from 16 kHz
            waveform: `"mfcc"` (13 + Δ + ΔΔ), `"fbank"` (log-mel) or `"waveform"` (raw 10 ms frames).
        sampling_rate (`int`, defaults to `16000`): input sample rate (the only one accepted).
        n_mels (`int`, defaults to `80`): mel bands of `"fbank"` and of the mel stage of `"mfcc"`.
        n_mfcc (`int`, defaults to `13`): cepstra of `"mfcc"`.
        normalize_features (`bool`, defaults to `True`): per-utterance mean/variance normalisation of the
            encoder input over each utterance's real frames.
        encoder_hidden_size (`int`, defaults to `768`): width of every encoder layer (probe point "enc").
        encoder_num_ff_layers (`int`, defaults to `4`): residual ReLU feed-forward layers ending the encoder.
        encoder_downsampling (`int`, defaults to `2`): 100 Hz frames per latent, a power of two made by that
            many stride-2 convolutions' worth of halvings: 2 → 50 Hz (320 samples per latent), 4 → 25 Hz,
            8 → 12.5 Hz.
        latent_dim (`int`, defaults to `64`): dimension of the bottleneck (probe point "bn").
        bottleneck (`str`, defaults to `"vq"`): `"none"` (dimensionality reduction only), `"vae"`
            (diagonal Gaussian, KL to N(0, I)) or `"vq"` (vector quantisation).
        kl_weight (`float`, defaults to `1.0`): VAE: weight of the KL term once warmed up.
        kl_warmup_steps (`int`, defaults to `0`): VAE: the KL weight grows linearly from 0 to `kl_weight`
            over this many optimisation steps (0 = constant), driven by `on_train_step`.
        kl_free_bits (`float`, defaults to `0.0`): VAE: free bits, in nats per latent dimension per frame
            (0 = off); each dimension's KL below it is not penalised.
        codebook_size (`int`, defaults to `256`): VQ: number of codes K (log2 K bits per latent).
        vq_commitment_cost (`float`, defaults to `0.25`): VQ: commitment weight β.
        vq_ema (`bool`, defaults to `False`): VQ: update the codebook by exponential moving averages instead
            of the codebook loss.
        vq_ema_decay (`float`, defaults to `0.99`): VQ: decay of the EMA codebook and of the code-usage statistics.
        vq_dead_code_threshold (`float`, defaults to `0.0`): VQ: codes assigned fewer times than this per
            training batch (moving average) are re-initialised from recent encoder outputs at
            `on_train_step` (0 = off).
        vq_kmeans_init (`bool`, defaults to `False`): VQ: initialise the codebook by k-means on the first
            training batch.
        jitter_prob (`float`, defaults to `0.12`): total probability that a latent is replaced by its left or
            right neighbour (p/2 each) during training.
        sparse_emission_window (`int`, defaults to `0`): sparse emission: window length in latent frames
            (0 = off); in each window only the `sparse_emission_keep` latents of largest norm are kept.
        sparse_emission_keep (`int`, defaults to `1`): sparse emission: latents kept per window.
        conditioning_channels (`int`, defaults to `128`): output width of the conditioning convolution
            (probe point "cond").
        conditioning_kernel_size (`int`, defaults to `3`): kernel of the conditioning convolution (odd).
        speaker_conditioning (`bool`, defaults to `False`): condition the decoder on a learned speaker
            embedding as well; needs `speakers`.
        speakers (`list[str]`, defaults to `[]`): speaker ids; row i of the speaker embedding is `speakers[i]`.
        speaker_embedding_dim (`int`, defaults to `64`): size of the speaker embedding.
        decoder_layers (`int`, defaults to `20`): WaveNet layers.
        decoder_dilation_cycles (`int`, defaults to `2`): cycles of doubling dilations 1, 2, …, 2^(layers/cycles - 1).
        residual_channels (`int`, defaults to `256`): WaveNet residual width.
        gate_channels (`int`, defaults to `368`): WaveNet gate width (each of the tanh and sigmoid halves).
        skip_channels (`int`, defaults to `256`): WaveNet skip width.
        decoder_output_channels (`int`, defaults to `256`): width of the hidden ReLU layer of the output head.
        quantization_channels (`int`, defaults to `256`): mu-law classes of the output softmax.
        probe_points (`list[str]`, defaults to `["enc", "proj", "bn", "cond"]`): the paper's penc, pproj,
            pbn and pcond, in `hidden_states` order.
        default_probe_point (`str`, defaults to `"bn"`): probe point returned as `last_hidden_state`.
    """

    model_type = "wavenet_ae"

    def __init__(
        self,
        input_features: str = "mfcc",
        sampling_rate: int = 16000,
        n_mels: int = 80,
        n_mfcc: int = 13,
        normalize_features: bool = True,
        encoder_hidden_size: int = 768,
        encoder_num_ff_layers: int = 4,
        encoder_downsampling: int = 2,
        latent_dim: int = 64,
        bottleneck: str = "vq",
        kl_weight: float = 1.0,
        kl_warmup_steps: int = 0,
        kl_free_bits: float = 0.0,
        codebook_size: int = 256,
        vq_commitment_cost: float = 0.25,
        vq_ema: bool = False,
        vq_ema_decay: float = 0.99,
        vq_dead_code_threshold: float = 0.0,
        vq_kmeans_init: bool = False,
        jitter_prob: float = 0.12,
        sparse_emission_window: int = 0,
        sparse_emission_keep: int = 1,
        conditioning_channels: int = 128,
        conditioning_kernel_size: int = 3,
        speaker_conditioning: bool = False,
        speakers: list | None = None,
        speaker_embedding_dim: int = 64,
        decoder_layers: int = 20,
        decoder_dilation_cycles: int = 2,
        residual_channels: int = 256,
        gate_channels: int = 368,
        skip_channels: int = 256,
        decoder_output_channels: int = 256,
        quantization_channels: int = 256,
        probe_points: list | None = None,
        default_probe_point: str = "bn",
        **kwargs,
    ):
        self.input_features = input_features
        self.sampling_rate = sampling_rate
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.normalize_features = normalize_features
        self.encoder_hidden_size = encoder_hidden_size
        self.encoder_num_ff_layers = encoder_num_ff_layers
        self.encoder_downsampling = encoder_downsampling
        self.latent_dim = latent_dim
        self.bottleneck = bottleneck
        self.kl_weight = kl_weight
        self.kl_warmup_steps = kl_warmup_steps
        self.kl_free_bits = kl_free_bits
        self.codebook_size = codebook_size
        self.vq_commitment_cost = vq_commitment_cost
        self.vq_ema = vq_ema
        self.vq_ema_decay = vq_ema_decay
        self.vq_dead_code_threshold = vq_dead_code_threshold
        self.vq_kmeans_init = vq_kmeans_init
        self.jitter_prob = jitter_prob
        self.sparse_emission_window = sparse_emission_window
        self.sparse_emission_keep = sparse_emission_keep
        self.conditioning_channels = conditioning_channels
        self.conditioning_kernel_size = conditioning_kernel_size
        self.speaker_conditioning = speaker_conditioning
        self.speakers = [str(s) for s in (speakers or [])]
        self.speaker_embedding_dim = speaker_embedding_dim
        self.decoder_layers = decoder_layers
        self.decoder_dilation_cycles = decoder_dilation_cycles
        self.residual_channels = residual_channels
        self.gate_channels = gate_channels
        self.skip_channels = skip_channels
        self.decoder_output_channels = decoder_output_channels
        self.quantization_channels = quantization_channels
        self.probe_points = list(probe_points or WAVENET_AE_PROBE_POINTS)
        self.default_probe_point = default_probe_point
        super().__init__(**kwargs)
        self.validate_wavenet_ae()

    @property
    def samples_per_latent(self) -> int:
        """Input samples per latent frame (320 at 50 Hz)."""
        return self.sampling_rate // 100 * self.encoder_downsampling

    @property
    def dilations(self) -> list[int]:
        per_cycle = self.decoder_layers // self.decoder_dilation_cycles
        return [2 ** (i % per_cycle) for i in range(self.decoder_layers)]

    def validate_wavenet_ae(self) -> None:
        """Check every field and their combinations; raise a ``ValueError`` naming the field."""
        errors = []

        def need(condition: bool, message: str) -> None:
            if not condition:
                errors.append(message)

        need(self.input_features in ("mfcc", "fbank", "waveform"),
             f"input_features must be 'mfcc', 'fbank' or 'waveform', got {self.input_features!r}")
        need(self.sampling_rate % 100 == 0, f"sampling_rate must be a multiple of 100 (10 ms hops), got {self.sampling_rate}")
        need(self.bottleneck in BOTTLENECKS, f"bottleneck must be one of {BOTTLENECKS}, got {self.bottleneck!r}")
        d = self.encoder_downsampling
        need(isinstance(d, int) and d >= 2 and (d & (d - 1)) == 0,
             f"encoder_downsampling must be a power of two >= 2 (2 → 50 Hz, 4 → 25 Hz, 8 → 12.5 Hz), got {d}")
        for name in ("encoder_hidden_size", "latent_dim", "conditioning_channels", "decoder_layers",
                     "decoder_dilation_cycles", "residual_channels", "gate_channels", "skip_channels",
                     "decoder_output_channels", "quantization_channels"):
            need(int(getattr(self, name)) > 0, f"{name} must be positive, got {getattr(self, name)}")
        need(self.encoder_num_ff_layers >= 0, f"encoder_num_ff_layers must be >= 0, got {self.encoder_num_ff_layers}")
        if self.decoder_dilation_cycles > 0:
            need(self.decoder_layers % self.decoder_dilation_cycles == 0,
                 f"decoder_layers ({self.decoder_layers}) must be a multiple of decoder_dilation_cycles ({self.decoder_dilation_cycles})")
        need(self.conditioning_kernel_size % 2 == 1, f"conditioning_kernel_size must be odd, got {self.conditioning_kernel_size}")
        need(0.0 <= self.jitter_prob <= 1.0, f"jitter_prob must be in [0, 1], got {self.jitter_prob}")
        need(self.sparse_emission_window >= 0, f"sparse_emission_window must be >= 0, got {self.sparse_emission_window}")
        if self.sparse_emission_window > 1:
            need(1 <= self.sparse_emission_keep <= self.sparse_emission_window,
                 f"sparse_emission_keep must be in [1, sparse_emission_window={self.sparse_emission_window}], got {self.sparse_emission_keep}")
        if self.bottleneck == "vq":
            need(self.codebook_size >= 2, f"codebook_size must be >= 2 for bottleneck='vq', got {self.codebook_size}")
            need(self.vq_commitment_cost >= 0, f"vq_commitment_cost must be >= 0, got {self.vq_commitment_cost}")
            need(0.0 < self.vq_ema_decay < 1.0, f"vq_ema_decay must be in (0, 1), got {self.vq_ema_decay}")
            need(self.vq_dead_code_threshold >= 0, f"vq_dead_code_threshold must be >= 0, got {self.vq_dead_code_threshold}")
        else:
            need(not self.vq_ema and not self.vq_kmeans_init and not self.vq_dead_code_threshold,
                 f"vq_ema / vq_kmeans_init / vq_dead_code_threshold only apply to bottleneck='vq', not {self.bottleneck!r}")
        if self.bottleneck == "vae":
            need(self.kl_weight >= 0, f"kl_weight must be >= 0, got {self.kl_weight}")
            need(self.kl_warmup_steps >= 0, f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
            need(self.kl_free_bits >= 0, f"kl_free_bits must be >= 0, got {self.kl_free_bits}")
        elif self.kl_free_bits or self.kl_warmup_steps:
            errors.append(f"kl_free_bits / kl_warmup_steps only apply to bottleneck='vae', not {self.bottleneck!r}")
        if self.speaker_conditioning:
            need(len(self.speakers) > 0, "speaker_conditioning=True needs a non-empty `speakers` list of speaker ids")
            need(len(set(self.speakers)) == len(self.speakers), "speakers must not contain duplicates")
            need(self.speaker_embedding_dim > 0, f"speaker_embedding_dim must be positive, got {self.speaker_embedding_dim}")
        unknown = [p for p in self.probe_points if p not in WAVENET_AE_PROBE_POINTS]
        need(not unknown, f"probe_points {unknown} unknown; choose from {list(WAVENET_AE_PROBE_POINTS)}")
        need(self.default_probe_point in self.probe_points,
             f"default_probe_point {self.default_probe_point!r} is not in probe_points {self.probe_points}")
        if errors:
            raise ValueError("WaveNetAEConfig: " + "; ".join(errors))
