"""repr-asr: unsupervised speech representations evaluated by low-resource ASR.

Importing the package registers every config, model and feature extractor with the
Hugging Face Auto classes, so ``AutoModel.from_pretrained(path)`` loads any upstream and
``AutoModelForCTC.from_pretrained(path)`` / ``AutoProcessor.from_pretrained(path)`` /
``pipeline("automatic-speech-recognition", ...)`` any recogniser.
"""

from .audio import AudioError, load_audio, mu_law_decode, mu_law_encode
from .feature_extraction import ReprFeatureExtractor

# Importing repr_asr.models registers every config, model, extractor, tokenizer and processor with the
# Auto classes (repr_asr/models/auto.py).
from .models.auto import MODEL_TYPES
from .models.cpc import CPCConfig, CPCModel
from .models.masked_recon import MaskedReconConfig, MaskedReconModel
from .models.spectral.configuration_spectral import SpectralConfig
from .models.spectral.modeling_spectral import SpectralModel
from .models.topline import ToplineConfig, ToplineModel
from .models.upstream_ctc import UpstreamForCTC, UpstreamForCTCConfig
from .models.wavenet_ae import WaveNetAEConfig, WaveNetAEModel
from .tokenization import SentencePieceCTCTokenizer

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "CPCConfig",
    "CPCModel",
    "MODEL_TYPES",
    "MaskedReconConfig",
    "MaskedReconModel",
    "ReprFeatureExtractor",
    "SentencePieceCTCTokenizer",
    "SpectralConfig",
    "SpectralModel",
    "ToplineConfig",
    "ToplineModel",
    "UpstreamForCTC",
    "UpstreamForCTCConfig",
    "WaveNetAEConfig",
    "WaveNetAEModel",
    "load_audio",
    "mu_law_decode",
    "mu_law_encode",
]
