"""Batches of utterances of similar length, and the collator that turns corpus rows into model inputs.

:class:`LengthGroupedBatchSampler` caps each batch by its *padded* size (``batch size × longest utterance``
seconds, which is what a padded batch costs in memory and compute) and/or by a number of utterances. It is a
pure function of ``(seed, epoch)``: rebuilding it and calling ``set_epoch`` gives the same batches, so a resumed
run sees exactly the data order the interrupted run would have seen (skip the batches already consumed, e.g.
with ``accelerate``'s ``skip_first_batches``).
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from ..audio import DEFAULT_SAMPLING_RATE, decode_audio


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Yield lists of dataset indices grouping utterances of similar duration.

    Each epoch: the utterances are shuffled (seeded by ``(seed, epoch)``), cut into buckets of ``bucket_size``
    utterances, each bucket is sorted by duration and cut greedily into batches, and the batches are
    shuffled. Without ``shuffle`` all utterances are sorted longest first and cut into batches in that order.

    Args:
        durations (`Sequence[float]`): seconds of each utterance (a corpus' ``duration`` column).
        max_seconds (`float`, optional): cap on ``len(batch) * max(duration in batch)``. An utterance longer
            than the cap gets a batch of its own (it is never dropped).
        max_batch_size (`int`, optional): cap on the number of utterances per batch. At least one cap is needed.
        shuffle (`bool`, defaults to `True`): shuffle as above; `False` gives a fixed longest-first order.
        seed (`int`, defaults to 0): seed of every shuffle.
        bucket_size (`int`, defaults to 1000): utterances sorted together; smaller buckets mix lengths more
            between epochs, larger ones pad less.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_seconds: Optional[float] = None,
        max_batch_size: Optional[int] = None,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size: int = 1000,
    ):
        durations = np.asarray(durations, dtype=np.float64)
        if durations.ndim != 1:
            raise ValueError(f"durations must be one number per utterance, got shape {durations.shape}")
        bad = np.flatnonzero(~np.isfinite(durations) | (durations < 0))
        if bad.size:
            raise ValueError(f"utterance {int(bad[0])}: duration {durations[bad[0]]} is not a finite number >= 0")
        if max_seconds is None and max_batch_size is None:
            raise ValueError("LengthGroupedBatchSampler needs max_seconds and/or max_batch_size")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if bucket_size < 1:
            raise ValueError(f"bucket_size must be >= 1, got {bucket_size}")
        self.durations = durations
        self.max_seconds = max_seconds
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_size = bucket_size
        self.epoch = 0
        self._cache: Optional[tuple[int, list[list[int]]]] = None

    @classmethod
    def from_dataset(cls, dataset, **kwargs) -> "LengthGroupedBatchSampler":
        """Sampler over a corpus split (a ``datasets.Dataset`` with a ``duration`` column)."""
        return cls(dataset["duration"], **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _cut(self, indices: np.ndarray) -> list[list[int]]:
        """Greedy batches over ``indices`` taken in order (longest first)."""
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for index in indices.tolist():
            duration = self.durations[index]
            grown = max(longest, duration)
            full = (self.max_batch_size is not None and len(current) + 1 > self.max_batch_size) or (
                self.max_seconds is not None and (len(current) + 1) * grown > self.max_seconds
            )
            if current and full:
                batches.append(current)
                current, grown = [], duration
            current.append(index)
            longest = grown
        if current:
            batches.append(current)
        return batches

    def batches(self, epoch: Optional[int] = None) -> list[list[int]]:
        """The batches of ``epoch`` (default: the current one), in the order they are yielded."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        if not self.shuffle:
            order = np.argsort(-self.durations, kind="stable")
            result = self._cut(order)
        else:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.durations))
            result = []
            for start in range(0, len(order), self.bucket_size):
                bucket = order[start : start + self.bucket_size]
                result.extend(self._cut(bucket[np.argsort(-self.durations[bucket], kind="stable")]))
            result = [result[i] for i in rng.permutation(len(result))]
        self._cache = (epoch, result)
        return result

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return len(self.batches())


def _label(row: dict, cell) -> Optional[str]:
    """``utterance ID (file)`` for error messages, or None to let decode_audio name the file itself."""
    if "id" not in row:
        return None
    where = cell if isinstance(cell, str) else (cell.get("path") if isinstance(cell, dict) else None)
    return f"utterance {row['id']}" + (f" ({where})" if where else "")


class AudioCollator:
    """Corpus rows → a padded batch: ``input_values (batch, samples)``, ``attention_mask (batch, samples)``.

    Each row's ``audio`` cell (a path or a ``datasets`` audio dict) is decoded with
    :func:`repr_asr.audio.decode_audio` at ``sampling_rate`` (errors name the utterance id), then padded by
    the feature extractor. The ``columns`` listed (default ``id``) are passed through as Python lists.

    Args:
        feature_extractor (`ReprFeatureExtractor`, optional): defaults to ``ReprFeatureExtractor(sampling_rate=...)``.
        sampling_rate (`int`, defaults to the feature extractor's, else 16000): decoding rate.
        audio_column (`str`, defaults to `"audio"`): the column holding audio cells.
        columns (`Sequence[str]`, defaults to `("id",)`): row fields copied into the batch.
    """

    def __init__(self, feature_extractor=None, sampling_rate: Optional[int] = None, audio_column: str = "audio", columns: Sequence[str] = ("id",)):
        if feature_extractor is None:
            from ..feature_extraction import ReprFeatureExtractor

            feature_extractor = ReprFeatureExtractor(sampling_rate=sampling_rate or DEFAULT_SAMPLING_RATE)
        self.feature_extractor = feature_extractor
        self.sampling_rate = sampling_rate or feature_extractor.sampling_rate
        self.audio_column = audio_column
        self.columns = tuple(columns)

    def __call__(self, rows: Sequence[dict]) -> dict:
        if not rows:
            raise ValueError("AudioCollator got an empty batch")
        waveforms = [decode_audio(row[self.audio_column], self.sampling_rate, name=_label(row, row[self.audio_column])) for row in rows]
        batch = self.feature_extractor(waveforms, sampling_rate=self.sampling_rate, padding="longest", return_tensors="pt")
        out = dict(batch)
        if "attention_mask" not in out:  # return_attention_mask=False extractors: the collator still needs lengths
            out["attention_mask"] = torch.zeros(out["input_values"].shape, dtype=torch.long)
            for i, wave in enumerate(waveforms):
                out["attention_mask"][i, : len(wave)] = 1
        for column in self.columns:
            out[column] = [row.get(column) for row in rows]
        return out
