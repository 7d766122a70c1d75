"""From an ``--upstream`` string to a model, its feature extractor and its name: the one place that reads it.

Every recipe, trainer and evaluation takes its upstream as a string: ``"fbank"`` / ``"mfcc"`` (the spectral
baseline, no pretraining), a ``save_pretrained`` folder (one of repr_asr's own models, or a transformers speech
encoder, :data:`~repr_asr.models.foreign.ENCODER_MODEL_TYPES`) or a Hugging Face hub id. :func:`resolve_upstream`
turns it into ``(model, feature_extractor, name)``; :func:`load_upstream` and :func:`load_feature_extractor`
are its two halves for callers that need only one, and :func:`upstream_display_name` is the one rule for the
short name tables and reports show (also applied to ``results.json`` files that lack one).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import NamedTuple, Optional

from torch import nn

from ..audio import SPECTRAL_FEATURES
from ..feature_extraction import ReprFeatureExtractor
from .auto import CTC_MODEL_TYPE, upstream_model_types
from .foreign import (
    ENCODER_MODEL_TYPES,
    HFEncoderUpstream,
    UpstreamError,
    UpstreamFolderError,
    default_feature_extractor_for,
    supported_upstreams_text,
)
from .spectral.configuration_spectral import SpectralConfig
from .spectral.modeling_spectral import SpectralModel

logger = logging.getLogger(__name__)

# A Hugging Face hub id: "name" or "org/name" (one slash at most, no leading dot).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def _local_folder(name_or_path: str, needs: str = "config.json"):
    """The folder ``name_or_path`` names, ``None`` when it is a hub id to hand to ``from_pretrained``.

    A string that exists on disk, or that only a path can be (absolute, ``./``, ``../``, ``~``, more than
    one separator, a backslash...), is a local path: a missing one or a folder without ``needs`` raises
    here, naming the path, instead of transformers' "Repo id must be in the form ..." message.
    """
    text = str(name_or_path)
    path = Path(os.path.expanduser(text))
    if not path.exists():
        if _HUB_ID.match(text) and not text.startswith("."):
            return None
        raise UpstreamFolderError(
            f"upstream {text!r}: no such folder (expected a save_pretrained folder with {needs}, "
            f"'fbank' / 'mfcc', or a hub name 'org/name')"
        )
    if not path.is_dir():
        raise UpstreamError(f"upstream {text!r} is a file: pass the save_pretrained folder that holds it")
    if needs and not (path / needs).is_file():
        hint = f"; did you mean {path / 'final'} (a training run's export)?" if (path / "final" / needs).is_file() else ""
        raise UpstreamFolderError(f"upstream folder {text!r} has no {needs}, so it is not a save_pretrained folder{hint}")
    return path


def _first_unreadable_safetensors(folder: Path):
    """The first ``*.safetensors`` file of ``folder`` whose header safetensors rejects (e.g. truncated)."""
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception:  # noqa: BLE001 - any failure to open is what we are looking for
            return file
    return None


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _model_type(folder: Path, name_or_path: str, **kwargs):
    """``(model_type, architectures)`` of a local folder's ``config.json`` or a hub name's config (``None``
    when a local ``config.json`` is not JSON: ``from_pretrained`` then says what is wrong with it)."""
    if folder is not None:
        try:
            config = json.loads((folder / "config.json").read_text())
        except (ValueError, OSError):
            return None, []
        return config.get("model_type"), config.get("architectures") or []
    from transformers import AutoConfig

    hub_kwargs = {k: v for k, v in kwargs.items() if k in ("local_files_only", "revision", "token", "cache_dir")}
    config = AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
    return config.model_type, list(getattr(config, "architectures", None) or [])


class ResolvedUpstream(NamedTuple):
    """What :func:`resolve_upstream` gives for an ``--upstream`` string (unpacks as a 3-tuple).

    Attributes:
        model: the upstream (an :class:`~repr_asr.models.upstream.UpstreamMixin` module), ``None`` when not asked for.
        feature_extractor: the extractor that prepares audio for it, ``None`` when not asked for.
        name: its short display name (:func:`upstream_display_name`).
    """

    model: Optional[nn.Module]
    feature_extractor: Optional[object]
    name: str


def resolve_upstream(upstream: str, *, model: bool = True, feature_extractor: bool = True, **kwargs) -> ResolvedUpstream:
    """The upstream behind a recipe's ``--upstream``: its model, its feature extractor and its display name.

    ``upstream`` is ``"fbank"`` / ``"mfcc"`` (no pretraining) or a folder / hub name in ``save_pretrained``
    format: one of repr_asr's own models (``AutoModel``), or a transformers speech encoder
    (:data:`~repr_asr.models.foreign.ENCODER_MODEL_TYPES`: Wav2Vec2, HuBERT, WavLM, data2vec-audio; a
    ``*Model``, ``*ForCTC`` or ``*ForPreTraining`` checkpoint, whose base model is loaded) wrapped as an
    :class:`~repr_asr.models.foreign.HFEncoderUpstream`. The config is read first: a model of any other
    type (a text model, a seq2seq model, a CTC recogniser...) or a folder without weights is refused before
    anything is loaded.

    The feature extractor is the one saved with the upstream, which every frozen-feature path (CTC, probes,
    ABX) extracts with:

    * ``"fbank"`` / ``"mfcc"``: ``ReprFeatureExtractor()`` (raw waveform; the spectral model normalises
      its own features).
    * a folder with ``preprocessor_config.json`` (every ``final/`` the Trainer writes has one): that
      extractor, via ``AutoFeatureExtractor.from_pretrained``, so e.g. ``do_normalize`` set at pretraining
      (``--data.normalize true``) is applied to evaluation audio too.
    * a folder without one: ``ReprFeatureExtractor(sampling_rate=<config.json's>)`` with a warning
      (what the model was trained with is unknown; this is the pretraining default); for a transformers
      speech encoder a ``Wav2Vec2FeatureExtractor`` with its released checkpoints' settings
      (:func:`~repr_asr.models.foreign.default_feature_extractor_for`), with a warning.
    * a hub name: ``AutoFeatureExtractor.from_pretrained`` (needs the hub or its local cache).

    Args:
        upstream (`str`): the ``--upstream`` string.
        model (`bool`, defaults to `True`): load the model (``False``: ``model`` is ``None``).
        feature_extractor (`bool`, defaults to `True`): load the feature extractor (``False``: ``None``).
        kwargs: passed to ``AutoModel.from_pretrained`` (``local_files_only``, ``revision``, ``token``...).

    Returns:
        :class:`ResolvedUpstream` ``(model, feature_extractor, name)``; ``name`` falls back on the model's
        type where the string names none (:func:`upstream_display_name`).

    Raises:
        UpstreamFolderError (a FileNotFoundError and an UpstreamError): a local-looking path that does not
            exist, or (with ``model``) a folder without ``config.json``.
        UpstreamError (a ValueError): a model that is not a supported upstream, or a speech encoder's folder
            without weights; the message lists what is supported.
        ValueError: a weights file safetensors cannot read (truncated copy...), naming the file.
        OSError: a hub name that cannot be loaded (offline, no such repository), naming it.

    Example:

        >>> from repr_asr.models import resolve_upstream
        >>> model, extractor, name = resolve_upstream("fbank")
        >>> name, model.default_probe_point, extractor.sampling_rate
        ('fbank', 'features', 16000)
    """
    upstream = str(upstream)
    if upstream in SPECTRAL_FEATURES:
        loaded = SpectralModel(SpectralConfig(input_features=upstream)) if model else None
        return ResolvedUpstream(loaded, ReprFeatureExtractor() if feature_extractor else None, upstream)
    # A folder (checked here, naming the path), or None for a hub id.
    folder = _local_folder(upstream, needs="config.json" if model else "")
    loaded = _load_model(upstream, folder, **kwargs) if model else None
    extractor = _load_feature_extractor(upstream, folder) if feature_extractor else None
    model_type = getattr(getattr(loaded, "config", None), "model_type", None)
    return ResolvedUpstream(loaded, extractor, upstream_display_name(upstream, model_type))


def load_upstream(name_or_path: str, **kwargs) -> nn.Module:
    """The model of :func:`resolve_upstream` alone (``kwargs`` go to ``from_pretrained``)."""
    return resolve_upstream(name_or_path, feature_extractor=False, **kwargs).model


def load_feature_extractor(name_or_path: str):
    """The feature extractor of :func:`resolve_upstream` alone (the model is not loaded)."""
    return resolve_upstream(name_or_path, model=False).feature_extractor


def upstream_display_name(upstream: str, model_type: Optional[str] = None) -> str:
    """The short name of an upstream in tables, reports and model cards: ``fbank`` / ``mfcc``, the run folder
    of a pretrained upstream (``runs/wavenet_vq/final`` → ``wavenet_vq``), a hub id's model name
    (``org/name`` → ``name``); ``model_type`` (else the string itself) where the path names nothing else
    (``final``, ``./``)."""
    text = str(upstream)
    if text in SPECTRAL_FEATURES:
        return text
    parts = [p for p in Path(text.rstrip("/")).parts if p not in ("final", ".", "..")]
    if parts:
        return parts[-1]
    return model_type or text


def upstream_hub_id(upstream: str) -> Optional[str]:
    """``upstream`` when it names a hub repo ``org/name`` (a model card's ``base_model``), None for a local
    folder or a spectral baseline."""
    if upstream in SPECTRAL_FEATURES or os.path.exists(upstream) or upstream.count("/") != 1:
        return None
    return upstream


def _load_model(name_or_path: str, folder: Optional[Path], **kwargs) -> nn.Module:
    """The model of a folder (``folder``) or hub id (``folder`` None); see :func:`resolve_upstream`."""
    from safetensors import SafetensorError
    from transformers import AutoModel

    try:
        model_type, architectures = _model_type(folder, name_or_path, **kwargs)
        ours = model_type in upstream_model_types()
        if model_type is not None and not ours and model_type not in ENCODER_MODEL_TYPES:
            kind = f"a {model_type!r} model" + (f" ({', '.join(architectures)})" if architectures else "")
            if model_type == CTC_MODEL_TYPE:
                kind += ", a CTC recogniser: pass the upstream it was trained on"
            raise UpstreamError(f"upstream {name_or_path!r} is {kind}, not a speech upstream repr_asr can run; "
                                f"{supported_upstreams_text()}")
        if model_type in ENCODER_MODEL_TYPES and folder is not None and not any((folder / f).is_file() for f in WEIGHT_FILES):
            raise UpstreamError(f"upstream folder {str(folder)!r} holds a {model_type!r} config.json but no weights "
                                f"(none of {', '.join(WEIGHT_FILES)}); copy the model's weights beside it")
        model = AutoModel.from_pretrained(str(folder or name_or_path), **kwargs)
    except SafetensorError as error:
        # safetensors' message ("incomplete metadata, file not fully covered") names no file.
        bad = _first_unreadable_safetensors(folder) if folder is not None else None
        where = str(bad) if bad is not None else f"the weights of {name_or_path!r}"
        raise ValueError(f"{where}: unreadable safetensors file ({error}); it is truncated or corrupt, copy or save it again") from error
    except OSError as error:
        if folder is not None:
            raise
        raise OSError(f"upstream {name_or_path!r}: no local folder of that name, and loading it from the "
                      f"Hugging Face hub failed: {error}") from error
    if model_type in ENCODER_MODEL_TYPES:
        return HFEncoderUpstream(model)
    return model


def _load_feature_extractor(name_or_path: str, folder: Optional[Path]):
    """The feature extractor of a folder (``folder``) or hub id (``folder`` None); see :func:`resolve_upstream`."""
    from transformers import AutoFeatureExtractor

    if folder is None:
        return AutoFeatureExtractor.from_pretrained(name_or_path)
    if (folder / "preprocessor_config.json").is_file():
        return AutoFeatureExtractor.from_pretrained(str(folder))
    sampling_rate = 16000
    if (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") in ENCODER_MODEL_TYPES:
            extractor = default_feature_extractor_for(config)
            logger.warning("%s: no preprocessor_config.json; using Wav2Vec2FeatureExtractor(do_normalize=%s, "
                           "return_attention_mask=%s), as the released %s checkpoints are set", folder,
                           extractor.do_normalize, extractor.return_attention_mask, config["model_type"])
            return extractor
        sampling_rate = int(config.get("sampling_rate", sampling_rate))
    logger.warning("%s: no preprocessor_config.json; using ReprFeatureExtractor(sampling_rate=%d) defaults "
                   "(no normalisation)", folder, sampling_rate)
    return ReprFeatureExtractor(sampling_rate=sampling_rate)
