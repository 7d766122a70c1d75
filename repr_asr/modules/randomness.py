"""Random draws per example: augmentations that do not depend on the batch an example lands in.

A training example carries a seed (``example_seeds``, ``(batch,)`` long, from
:class:`repr_asr.data.crops.RandomCropDataset`: a function of the run's seed, the epoch and the
example's index). Drawing an example's jitter, masks, negatives or VAE noise from a generator seeded
with that seed (and the name of the draw, so two kinds of draws never share numbers) makes them the
same whether the example sits in a batch of 8 on one process or of 4 on the second of two processes,
and different for any two examples. Without seeds (a direct call, evaluation) torch's global RNG is used.

The draws are made on the CPU with one ``torch.Generator`` per example and then moved: a small
cost beside a training step.
"""

from __future__ import annotations

import zlib
from typing import Optional, Sequence

import numpy as np
import torch


def _stream_seed(seed: int, stream: str) -> int:
    state = np.random.SeedSequence([int(seed) & (2**63 - 1), zlib.crc32(stream.encode())]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 32) | int(state[1])


def example_generators(seeds: torch.Tensor, stream: str) -> list[torch.Generator]:
    """One CPU generator per example, seeded by ``(seed, stream)``."""
    return [torch.Generator().manual_seed(_stream_seed(s, stream)) for s in seeds.view(-1).tolist()]


def _draw(kind, seeds: Optional[torch.Tensor], shape: Sequence[int], stream: str, device, dtype) -> torch.Tensor:
    shape = tuple(int(n) for n in shape)
    if seeds is None:
        return kind(shape, device=device, dtype=dtype)
    if seeds.shape[0] != shape[0]:
        raise ValueError(f"example_seeds has {seeds.shape[0]} entries for a batch of {shape[0]} examples")
    rows = [kind(shape[1:], generator=g, dtype=dtype) for g in example_generators(seeds, stream)]
    return torch.stack(rows).to(device)


def example_rand(seeds: Optional[torch.Tensor], shape: Sequence[int], stream: str, device=None,
                 dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) of ``shape`` = ``(batch, ...)``: row ``b`` from example ``b``'s seed (global RNG when ``seeds`` is None)."""
    return _draw(torch.rand, seeds, shape, stream, device, dtype)


def example_randn(seeds: Optional[torch.Tensor], shape: Sequence[int], stream: str, device=None,
                  dtype=torch.float32) -> torch.Tensor:
    """Standard normal of ``shape`` = ``(batch, ...)``, drawn like :func:`example_rand`."""
    return _draw(torch.randn, seeds, shape, stream, device, dtype)
