"""What several training processes must share so that they compute what one process would.

Data-parallel training averages gradients over processes. That equals one process on the whole
batch only when every process's loss is its *sum* divided by the *same* count: a mean over a
process's own positions weights a position by 1 / (its process's count). :func:`global_count` gives
that shared count (the mean of the processes' counts). Statistics that modules keep in buffers (a
VQ codebook's EMA, code usage, k-means initialisation, recently seen encoder outputs) are summed or
gathered over processes with :func:`all_reduce_sum` and :func:`gather_rows`, so every process holds
the buffers one process would.

Collectives run only with ``torch.distributed`` initialised with more than one process, and callers
reach them only in training passes (:func:`global_count` only with gradients on; the VQ's statistics
only in train mode), where every process runs the same code path in the same order. With one process
every function here is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def synchronising() -> bool:
    """Whether there are other processes to synchronise with."""
    return world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over processes (in place; returned for chaining)."""
    if synchronising():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def global_count(count: torch.Tensor) -> torch.Tensor:
    """The mean over processes of ``count`` (a scalar): divide a process's loss sum by it, so the
    averaged gradients are those of the mean over every process's positions."""
    if not (synchronising() and torch.is_grad_enabled()):  # evaluation passes may differ between processes
        return count
    shared = count.detach().float().clone()
    dist.all_reduce(shared, op=dist.ReduceOp.SUM)
    return shared / world_size()


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """``(N_r, D)`` rows of every process, concatenated in rank order (every process gets all)."""
    if not synchronising():
        return rows
    sizes = torch.tensor([rows.shape[0]], device=rows.device)
    all_sizes = [torch.zeros_like(sizes) for _ in range(world_size())]
    dist.all_gather(all_sizes, sizes)
    longest = int(max(int(s) for s in all_sizes))
    padded = torch.zeros(longest, *rows.shape[1:], dtype=rows.dtype, device=rows.device)
    padded[: rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[: int(size)] for part, size in zip(parts, all_sizes)])
