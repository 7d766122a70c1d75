"""The CTC recipe's data: labeled splits, datasets of cached frozen features or of audio, their collators,
and the scan that finds undecodable audio before features are extracted.

Undecodable audio (``repr_asr.audio.AudioError``) is skipped and named, unless ``strict``: the audio
dataset returns ``skipped_item`` markers (``repr_asr.data.skipping``) that the collator moves to
``batch["skipped"]``; the frozen-feature path leaves such utterances out before extraction
(:func:`undecodable`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...data.skipping import SKIPPED_KEY, skipped_item, split_skipped
from ...evaluation.transcribe import gather_lists

logger = logging.getLogger(__name__)


def subset_split(corpus, subset: str):
    """The corpus split ``train-<subset>``; a missing or empty one is a ``CorpusError`` naming it."""
    from ...data.librispeech import CorpusError, MissingSplitError

    name = f"train-{subset}"
    if name not in corpus:
        raise MissingSplitError(f"the corpus has no split {name!r} (it has {list(corpus)})")
    split = corpus[name]
    if len(split) == 0:
        raise CorpusError(f"split {name!r} is empty")
    return split


def without_empty_references(split, references: list[str], name: str) -> tuple:
    """``(split, skipped)``: ``split`` without the utterances whose reference (``references``, one per row)
    normalises to nothing, and one ``{"id", "error"}`` naming each of them.

    WER, CER and PER are undefined for an empty reference (jiwer refuses it), so a transcript of only
    symbols (``"--"``, ``"..."``) or an utterance without phones would otherwise fail the scoring after the
    whole training; it is named in the log, left out of the split's scores and counted among its skipped
    utterances instead."""
    from ...data.text import normalize_text

    empty = [i for i, reference in enumerate(references) if not normalize_text(reference)]
    if not empty:
        return split, []
    ids = [str(i) for i in split["id"]] if "id" in split.column_names else [str(i) for i in range(len(split))]
    skipped = [{"id": ids[i], "error": f"utterance {ids[i]}: its transcript {references[i]!r} normalises to nothing "
                                      "(no letter or digit), so no error rate can be computed for it"} for i in empty]
    for item in skipped:
        logger.warning("%s: skipping %s", name, item["error"])
    return split.select(sorted(set(range(len(split))) - set(empty))), skipped


def limit(split, n: int):
    """The first ``n`` rows of ``split`` (all of them for ``n`` <= 0)."""
    return split.select(range(min(n, len(split)))) if n and n > 0 else split


def pad_labels(labels: list[list[int]]) -> torch.Tensor:
    """``(batch, max_label_len)`` label ids padded with -100 (what ``UpstreamForCTC`` ignores)."""
    out = torch.full((len(labels), max(len(l) for l in labels)), -100, dtype=torch.long)
    for i, label in enumerate(labels):
        out[i, : len(label)] = torch.as_tensor(label, dtype=torch.long)
    return out


class CachedFeatureDataset(torch.utils.data.Dataset):
    """Items of frozen features + labels: per utterance a ``(frames, sum of dims)`` array, the probe points the
    model reads (``weighted_probe_points``, whatever their widths) concatenated along the features in order."""

    def __init__(self, stacks: list[np.ndarray], labels: Optional[list[list[int]]] = None):
        self.stacks = stacks
        self.labels = labels

    def __len__(self) -> int:
        return len(self.stacks)

    def frames(self) -> list[int]:
        """Real frames of each item."""
        return [int(s.shape[0]) for s in self.stacks]

    def __getitem__(self, index: int) -> dict:
        item = {"upstream_features": self.stacks[index]}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


def collate_features(items: list[dict]) -> dict:
    """Pad ``(frames, sum of dims)`` items into ``upstream_features`` ``(batch, frames, sum of dims)`` (zeros
    after each item's frames) with ``feature_lengths`` ``(batch,)``."""
    stacks = [torch.as_tensor(item["upstream_features"]) for item in items]
    lengths = torch.tensor([s.shape[0] for s in stacks], dtype=torch.long)
    batch = torch.zeros(len(stacks), int(lengths.max()), stacks[0].shape[1], dtype=stacks[0].dtype)
    for i, stack in enumerate(stacks):
        batch[i, : stack.shape[0]] = stack
    out = {"upstream_features": batch, "feature_lengths": lengths}
    if "labels" in items[0]:
        out["labels"] = pad_labels([item["labels"] for item in items])
    return out


class AudioLabelDataset(torch.utils.data.Dataset):
    """Items of decoded audio + labels, for a fine-tuned upstream.

    An utterance whose audio cannot be decoded (``AudioError``) becomes a ``skipped_item`` marker that
    the collator drops and names, unless ``strict``, which raises.
    """

    def __init__(self, split, labels: Optional[list[list[int]]] = None, sampling_rate: int = 16000, strict: bool = False):
        self.split = split
        self.labels = labels
        self.sampling_rate = sampling_rate
        self.strict = strict

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict:
        from ...audio import AudioError, decode_audio

        row = self.split[index]
        try:
            audio = decode_audio(row["audio"], self.sampling_rate, name=row["id"])
        except AudioError as error:
            if self.strict:
                raise
            return skipped_item(row["id"], error)
        item = {"audio": audio}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


class AudioLabelCollator:
    """Pads waveforms with ``feature_extractor`` (the one saved into ``final/``) into ``input_values``
    ``(batch, samples)`` + ``attention_mask``; skipped items are listed under ``batch["skipped"]``
    (a batch of skipped items only holds nothing else)."""

    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor

    def __call__(self, items: list[dict]) -> dict:
        items, skipped = split_skipped(items)
        out: dict = {SKIPPED_KEY: skipped} if skipped else {}
        if not items:
            return out
        batch = self.feature_extractor(  # padded with the mask whatever the extractor's defaults (as in features.py)
            [item["audio"] for item in items], sampling_rate=self.feature_extractor.sampling_rate, padding="longest",
            return_attention_mask=True, return_tensors="pt"
        )
        out.update(input_values=batch["input_values"], attention_mask=batch["attention_mask"])
        if "labels" in items[0]:
            out["labels"] = pad_labels([item["labels"] for item in items])
        return out


def undecodable(split, sampling_rate: int, state=None) -> list[dict]:
    """``[{"index", "id", "error"}]`` for the utterances of ``split`` whose audio raises ``AudioError``,
    in split order (with several processes each decodes a share)."""
    from ...audio import AudioError, decode_audio

    step, start = (state.num_processes, state.process_index) if state is not None else (1, 0)
    bad = []
    for index in range(start, len(split), step):
        row = split[index]
        try:
            decode_audio(row["audio"], sampling_rate, name=row["id"])
        except AudioError as error:
            bad.append({"index": index, "id": str(row["id"]), "error": str(error)})
    return sorted(gather_lists(state, bad), key=lambda item: item["index"])


def feature_stacks(model, split, cache_dir: Optional[Path], cache_key: str, max_batch_seconds: float,
                   feature_extractor=None, state=None) -> list[np.ndarray]:
    """``(frames, sum of dims)`` per utterance: the probe points the CTC model reads (``weighted_probe_points``:
    one, or all those of a learned mix, of any widths; each cached on its own by ``extract_features``)
    concatenated along the features in that order, with the audio prepared by ``feature_extractor`` (the one
    ``final/`` and the ASR pipeline use)."""
    from ...evaluation.features import extract_features

    points = list(model.weighted_probe_points)
    extracted = extract_features(
        model.upstream, split, probe_points=points, max_batch_seconds=max_batch_seconds,
        cache_dir=cache_dir, cache_key=cache_key, feature_extractor=feature_extractor,
        device=state.device if state is not None else None, accelerator=state,
    )
    per_point = [extracted.features[p] for p in points]
    stacks = []
    for arrays in zip(*per_point):
        frames = min(a.shape[0] for a in arrays)  # points at one rate may differ by an edge frame
        stacks.append(np.concatenate([a[:frames] for a in arrays], axis=1).astype(np.float32))  # (T, sum of D)
    return stacks


def count_too_long(output_lengths: list[int], labels: list[list[int]]) -> int:
    """Utterances whose labels need more CTC frames than the model emits (repeats need a blank between)."""
    from ...models.upstream_ctc.modeling_upstream_ctc import ctc_min_frames

    needed = ctc_min_frames(pad_labels(labels)).tolist()
    return sum(int(n > o) for n, o in zip(needed, output_lengths))
