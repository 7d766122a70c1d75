"""FLOPs of one training step, counted at run time: what "equal compute" between upstreams means.

``torch.utils.flop_counter.FlopCounterMode`` counts the matrix products and convolutions of a real
forward + backward pass on a real batch (elementwise work is not counted, as in the literature's
FLOP budgets). The pass runs on a copy of the model under a forked RNG, so training itself is not
changed by being measured.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode


def _addmm_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


# FlopCounterMode knows out-of-place addmm only; the WaveNet stack accumulates in place.
IN_PLACE_FLOPS = {torch.ops.aten.addmm_: _addmm_flops}


def count_step_flops(model: torch.nn.Module, batch: dict, forward_fn) -> int:
    """FLOPs of ``forward_fn(model, batch).loss.backward()`` (one batch; multiply by the accumulation
    steps and processes for an optimisation step). ``model`` is left untouched."""
    probe = copy.deepcopy(model).train()
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # oneDNN's fused CPU LSTM kernel is invisible to the counter; the native path runs the same products.
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False, custom_mapping=IN_PLACE_FLOPS) as counter:
            forward_fn(probe, batch).loss.backward()
    return int(counter.get_total_flops())
