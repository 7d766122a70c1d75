"""repr-asr: unsupervised speech representations evaluated by low-resource ASR.

Importing the package registers every config, model and feature extractor with the
Hugging Face Auto classes, so ``AutoModel.from_pretrained(path)`` loads any upstream.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from .audio import AudioError, load_audio, mu_law_decode, mu_law_encode
from .feature_extraction import ReprFeatureExtractor
from .models.cpc import CPCConfig, CPCModel
from .models.masked_recon import MaskedReconConfig, MaskedReconModel
from .models.spectral.configuration_spectral import SpectralConfig
from .models.spectral.modeling_spectral import SpectralModel
from .models.wavenet_ae import WaveNetAEConfig, WaveNetAEModel

__version__ = "0.1.0"


def _register(config_cls, model_cls):
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    AutoModel.register(config_cls, model_cls, exist_ok=True)
    AutoFeatureExtractor.register(config_cls, ReprFeatureExtractor, exist_ok=True)


_register(SpectralConfig, SpectralModel)
_register(CPCConfig, CPCModel)
_register(MaskedReconConfig, MaskedReconModel)
_register(WaveNetAEConfig, WaveNetAEModel)

# The CTC model (AutoModelForCTC) and its tokenizers (AutoTokenizer finds them by class name).
from transformers import AutoModelForCTC, AutoTokenizer  # noqa: E402

from .models.upstream_ctc import UpstreamForCTC, UpstreamForCTCConfig  # noqa: E402
from .tokenization import SentencePieceCTCTokenizer  # noqa: E402

AutoConfig.register(UpstreamForCTCConfig.model_type, UpstreamForCTCConfig, exist_ok=True)
AutoModelForCTC.register(UpstreamForCTCConfig, UpstreamForCTC, exist_ok=True)
AutoFeatureExtractor.register(UpstreamForCTCConfig, ReprFeatureExtractor, exist_ok=True)
AutoTokenizer.register(UpstreamForCTCConfig, tokenizer_class=SentencePieceCTCTokenizer, exist_ok=True)

__all__ = [
    "AudioError",
    "CPCConfig",
    "CPCModel",
    "ReprFeatureExtractor",
    "SpectralConfig",
    "SpectralModel",
    "WaveNetAEConfig",
    "WaveNetAEModel",
    "load_audio",
    "mu_law_decode",
    "mu_law_encode",
]
