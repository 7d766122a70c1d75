"""repr-asr: unsupervised speech representations evaluated by low-resource ASR.

Importing the package registers every config, model and feature extractor with the
Hugging Face Auto classes, so ``AutoModel.from_pretrained(path)`` loads any upstream and
``AutoModelForCTC.from_pretrained(path)`` / ``AutoProcessor.from_pretrained(path)`` /
``pipeline("automatic-speech-recognition", ...)`` any recogniser.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCTC,
    AutoProcessor,
    AutoTokenizer,
    Wav2Vec2Processor,
)

from .audio import AudioError, load_audio, mu_law_decode, mu_law_encode
from .feature_extraction import ReprFeatureExtractor
from .models.cpc import CPCConfig, CPCModel
from .models.masked_recon import MaskedReconConfig, MaskedReconModel
from .models.spectral.configuration_spectral import SpectralConfig
from .models.spectral.modeling_spectral import SpectralModel
from .models.topline import ToplineConfig, ToplineModel
from .models.upstream_ctc import UpstreamForCTC, UpstreamForCTCConfig
from .models.wavenet_ae import WaveNetAEConfig, WaveNetAEModel
from .tokenization import SentencePieceCTCTokenizer

__version__ = "0.1.0"


# The model types registered below, so code can name ours without reading the Auto classes' internals.
MODEL_TYPES: list[str] = []


def _register(config_cls, model_cls, auto_model=AutoModel):
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    if config_cls.model_type not in MODEL_TYPES:
        MODEL_TYPES.append(config_cls.model_type)
    auto_model.register(config_cls, model_cls, exist_ok=True)
    AutoFeatureExtractor.register(config_cls, ReprFeatureExtractor, exist_ok=True)


_register(SpectralConfig, SpectralModel)
_register(CPCConfig, CPCModel)
_register(MaskedReconConfig, MaskedReconModel)
_register(WaveNetAEConfig, WaveNetAEModel)
_register(ToplineConfig, ToplineModel)
_register(UpstreamForCTCConfig, UpstreamForCTC, auto_model=AutoModelForCTC)
# Character models use transformers' own Wav2Vec2CTCTokenizer; AutoTokenizer finds ours by class name.
AutoTokenizer.register(UpstreamForCTCConfig, tokenizer_class=SentencePieceCTCTokenizer, exist_ok=True)
# A CTC folder's processor is transformers' Wav2Vec2Processor (our extractor + either tokenizer; why in
# repr_asr/downstream/ctc/train.py): its processor_config.json names it, and folders written before they
# held one find it through the model type.
AutoProcessor.register(UpstreamForCTCConfig, Wav2Vec2Processor, exist_ok=True)

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
