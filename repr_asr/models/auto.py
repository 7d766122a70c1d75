"""Registration of every repr_asr model with the Hugging Face Auto classes.

``repr_asr.models`` imports this module first, so importing any model (or ``import repr_asr``) registers
them all: ``AutoConfig`` / ``AutoModel`` / ``AutoFeatureExtractor`` load any upstream from its folder,
``AutoModelForCTC`` / ``AutoProcessor`` / ``AutoTokenizer`` (and ``pipeline("automatic-speech-recognition")``)
any recogniser.

A new upstream is a folder ``models/<name>/`` (configuration + modeling) plus one :func:`register_upstream`
line below; :func:`repr_asr.models.loading.resolve_upstream` then loads it from ``--upstream`` with no
other change.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCTC,
    AutoProcessor,
    AutoTokenizer,
    Wav2Vec2Processor,
)

from ..feature_extraction import ReprFeatureExtractor
from ..tokenization import SentencePieceCTCTokenizer
from .cpc import CPCConfig, CPCModel
from .masked_recon import MaskedReconConfig, MaskedReconModel
from .spectral.configuration_spectral import SpectralConfig
from .spectral.modeling_spectral import SpectralModel
from .topline import ToplineConfig, ToplineModel
from .upstream_ctc import UpstreamForCTC, UpstreamForCTCConfig
from .wavenet_ae import WaveNetAEConfig, WaveNetAEModel

# The model types registered below, so code can name ours without reading the Auto classes' internals.
MODEL_TYPES: list[str] = []
# Of those, the recogniser: a CTC model over an upstream, never an upstream itself.
CTC_MODEL_TYPE = UpstreamForCTCConfig.model_type


def register_upstream(config_cls, model_cls, auto_model=AutoModel) -> None:
    """Register ``config_cls`` / ``model_cls`` with ``AutoConfig`` and ``auto_model``, and
    :class:`~repr_asr.feature_extraction.ReprFeatureExtractor` as its ``AutoFeatureExtractor``; the
    model type joins :data:`MODEL_TYPES`. Registering twice is harmless (``exist_ok``)."""
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    if config_cls.model_type not in MODEL_TYPES:
        MODEL_TYPES.append(config_cls.model_type)
    auto_model.register(config_cls, model_cls, exist_ok=True)
    AutoFeatureExtractor.register(config_cls, ReprFeatureExtractor, exist_ok=True)


def upstream_model_types() -> list[str]:
    """Our model types that ``--upstream`` accepts (every registered one but the CTC recogniser)."""
    return [t for t in MODEL_TYPES if t != CTC_MODEL_TYPE]


register_upstream(SpectralConfig, SpectralModel)
register_upstream(CPCConfig, CPCModel)
register_upstream(MaskedReconConfig, MaskedReconModel)
register_upstream(WaveNetAEConfig, WaveNetAEModel)
register_upstream(ToplineConfig, ToplineModel)
register_upstream(UpstreamForCTCConfig, UpstreamForCTC, auto_model=AutoModelForCTC)
# Character models use transformers' own Wav2Vec2CTCTokenizer; AutoTokenizer finds ours by class name.
AutoTokenizer.register(UpstreamForCTCConfig, tokenizer_class=SentencePieceCTCTokenizer, exist_ok=True)
# A CTC folder's processor is transformers' Wav2Vec2Processor (our extractor + either tokenizer; why in
# repr_asr/downstream/ctc/train.py): its processor_config.json names it, and folders written before they
# held one find it through the model type.
AutoProcessor.register(UpstreamForCTCConfig, Wav2Vec2Processor, exist_ok=True)
