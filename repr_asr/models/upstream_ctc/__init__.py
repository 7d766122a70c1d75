"""The downstream CTC model: an upstream's features with a CTC head (frozen or fine-tuned)."""

from .configuration_upstream_ctc import UpstreamForCTCConfig
from .modeling_upstream_ctc import UpstreamCTCOutput, UpstreamForCTC, ctc_min_frames

__all__ = ["UpstreamCTCOutput", "UpstreamForCTC", "UpstreamForCTCConfig", "ctc_min_frames"]
