"""Length-grouped batches whose order is a function of (seed, epoch), so that a resumed run sees the same.

Random batches of utterances pad every one to the longest of its batch; on the study's ``train-1h`` that is
half as many frames again as the speech itself (padding factor 1.49 with 4 per batch, 1.02 grouped), and a
BiLSTM CTC step costs in proportion. transformers' ``LengthGroupedSampler`` already draws the usual order
(random mega-batches of 50 batches, sorted by length inside); what it lacks for our Trainer is an epoch:
its generator runs on from epoch to epoch, so a run resumed from a checkpoint would see another order.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """``LengthGroupedSampler`` reseeded with ``seed + epoch`` at each ``set_epoch`` (Accelerate's loaders call
    it, also through ``skip_first_batches``): every process draws the same order, and so does a resumed run."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        if any(int(length) < 0 for length in lengths):
            raise ValueError("train_lengths: lengths must be >= 0")
        super().__init__(batch_size, lengths=[int(length) for length in lengths], generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(self.seed + epoch)

    def __iter__(self):
        self.set_epoch(self.epoch)  # iterating twice in one epoch gives the same order
        return super().__iter__()
