"""Building blocks of the upstream models, one concept per module.

- :mod:`.wavenet`: the WaveNet decoder stack with teacher-forced and cached incremental evaluation.
- :mod:`.encoders`: padding-aware convolutional encoders.
- :mod:`.bottlenecks`: none / VAE / VQ bottlenecks.
- :mod:`.jitter`: randomized time jitter of latents.
- :mod:`.emission`: sparse (non-max-suppressed) emission of latents.
- :mod:`.conditioning`: the conditioning stack feeding the WaveNet (latent mixing + speaker).
- :mod:`.bilstm`: a bidirectional LSTM over padded batches (the CTC head).
- :mod:`.masking`: lengths and masks of padded batches; :mod:`.normalization`: CMVN over real frames.
- :mod:`.distributed`, :mod:`.randomness`: statistics over training processes, per-example random draws.
"""

from .bottlenecks import BottleneckOutput, GaussianBottleneck, IdentityBottleneck, VectorQuantizer
from .conditioning import ConditioningStack
from .emission import sparse_emission
from .encoders import ConvEncoder
from .jitter import TimeJitter
from .wavenet import WaveNet, WaveNetCache

__all__ = [
    "BottleneckOutput",
    "ConditioningStack",
    "ConvEncoder",
    "GaussianBottleneck",
    "IdentityBottleneck",
    "TimeJitter",
    "VectorQuantizer",
    "WaveNet",
    "WaveNetCache",
    "sparse_emission",
]
