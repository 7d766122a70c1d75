"""Upstream models (WaveNet autoencoder, CPC, masked reconstruction, spectral baseline, supervised
topline), transformers speech encoders and other modules wrapped as upstreams (:mod:`.foreign`), and the
CTC head.

Importing this package registers every model with the Auto classes (:mod:`.auto`, imported first);
:func:`resolve_upstream` (:mod:`.loading`) turns an ``--upstream`` string into its model, feature
extractor and display name. No module here imports the top-level ``repr_asr`` package.
"""

from .auto import MODEL_TYPES, register_upstream, upstream_model_types
from .foreign import (
    ENCODER_MODEL_TYPES,
    HFEncoderUpstream,
    UpstreamError,
    UpstreamFolderError,
    WrappedUpstream,
    default_feature_extractor_for,
    supported_upstreams_text,
)
from .loading import (
    WEIGHT_FILES,
    ResolvedUpstream,
    load_feature_extractor,
    load_upstream,
    resolve_upstream,
    upstream_display_name,
    upstream_hub_id,
)

__all__ = [
    "ENCODER_MODEL_TYPES",
    "HFEncoderUpstream",
    "MODEL_TYPES",
    "ResolvedUpstream",
    "UpstreamError",
    "UpstreamFolderError",
    "WEIGHT_FILES",
    "WrappedUpstream",
    "default_feature_extractor_for",
    "load_feature_extractor",
    "load_upstream",
    "register_upstream",
    "resolve_upstream",
    "supported_upstreams_text",
    "upstream_display_name",
    "upstream_hub_id",
    "upstream_model_types",
]
