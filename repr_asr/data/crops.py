"""Fixed-length random crops of a corpus split: the training examples of every upstream's pretraining.

Item ``i`` of epoch ``e`` is a crop of utterance ``i`` whose offset is drawn from a generator seeded
with ``(seed, e, i)`` only, so the crops of a resumed run are the crops the uninterrupted run saw,
whatever the worker count or the order in which items are fetched.

Each item also carries an ``example_seed`` drawn from the same ``(seed, epoch, index)``: the model
draws the example's random augmentations (jitter, masking, negatives, VAE noise) from it
(:mod:`repr_asr.modules.randomness`), so they do not depend on which process or batch the example
lands in, and two examples never share a random stream.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..audio import DEFAULT_SAMPLING_RATE, AudioError, decode_audio
from .skipping import SKIPPED_KEY, skipped_item, split_skipped


class CropSettings:
    """What every source of pretraining crops shares (:class:`RandomCropDataset`, and the streamed
    ``repr_asr.data.streaming.StreamingCropDataset``): the crop length, the seed and epoch its draws follow,
    the speaker list, waveform normalisation, the sampling rate and ``strict``, checked once here."""

    def _set_crop_settings(self, crop_samples: int, seed: int, speakers: Optional[Sequence[str]], normalize: bool,
                           sampling_rate: int, strict: bool) -> None:
        if crop_samples < 1:
            raise ValueError(f"crop_samples must be >= 1, got {crop_samples}")
        self.crop_samples = int(crop_samples)
        self.seed = int(seed)
        self.epoch = 0
        self.normalize = normalize
        self.sampling_rate = sampling_rate
        self.strict = bool(strict)
        self.speaker_index = {str(s): i for i, s in enumerate(speakers)} if speakers is not None else None

    def set_epoch(self, epoch: int) -> None:
        """Crops (and a stream's order) change with the epoch (called by the Trainer before each epoch)."""
        self.epoch = int(epoch)


class RandomCropDataset(CropSettings, torch.utils.data.Dataset):
    """``crop_samples``-long crops of every utterance of ``split`` (a ``datasets.Dataset`` with an ``audio`` column).

    Args:
        split: the corpus split (columns ``id``, ``audio`` and, for ``speakers``, ``speaker_id``).
        crop_samples: samples per crop. Utterances shorter than that are zero-padded and their
            ``attention_mask`` is 0 over the padding.
        seed: seeds the crop offsets together with the epoch and the item index.
        speakers: optional speaker-id list; each item then carries ``speaker_ids``, the index of its
            speaker in this list (a speaker missing from it raises an error naming the utterance).
        cache_audio: keep every decoded utterance in memory (small corpora; one copy per DataLoader worker).
        normalize: zero-mean unit-variance normalisation of each crop over its real samples
            (as ``ReprFeatureExtractor(do_normalize=True)`` does).
        sampling_rate: the rate audio is decoded at.
        phone_hop: with a hop in samples (a model that learns from phone labels, e.g. the supervised
            topline), each item also carries ``phone_labels``: the phone id
            (:data:`repr_asr.data.phones.PHONE_TO_ID`) of every ``phone_hop``-sample frame of the crop, read
            from the split's ``phones`` column (frame ``t`` is the phone at sample ``offset + t * phone_hop``,
            the centre of a centred analysis window; gaps between segments are silence; ``-100`` past the
            audio). A split without phone alignments raises an error naming it.
        strict: raise on an utterance whose audio cannot be decoded (the :class:`~repr_asr.audio.AudioError`
            names the utterance and its file). By default (``False``) the item is
            ``skipped_item(utterance_id, error)`` instead and ``collate_crops`` lists it under ``"skipped"``
            (:mod:`repr_asr.data.skipping`), so one bad file in a long run costs one example, not the run.

    Items are dicts of numpy arrays: ``input_values`` ``(crop_samples,)`` float32, ``attention_mask``
    ``(crop_samples,)`` int32, ``example_seed`` (int) and, with ``speakers``, ``speaker_ids`` (int).
    ``collate_crops`` stacks them.
    """

    def __init__(
        self,
        split,
        crop_samples: int,
        seed: int = 0,
        speakers: Optional[Sequence[str]] = None,
        cache_audio: bool = False,
        normalize: bool = False,
        sampling_rate: int = DEFAULT_SAMPLING_RATE,
        strict: bool = False,
        phone_hop: Optional[int] = None,
    ):
        self._set_crop_settings(crop_samples, seed, speakers, normalize, sampling_rate, strict)
        if "audio" not in split.column_names:
            raise ValueError(f"the split has no `audio` column (columns: {split.column_names})")
        self.split = split
        self.cache_audio = cache_audio
        self._cache: dict[int, np.ndarray] = {}
        self._speaker_ids = None
        if speakers is not None:
            if "speaker_id" not in split.column_names:
                raise ValueError(f"speakers were given but the split has no `speaker_id` column (columns: {split.column_names})")
            self._speaker_ids = [str(s) for s in split["speaker_id"]]
        self._ids = split["id"] if "id" in split.column_names else [str(i) for i in range(len(split))]
        self.phone_hop = phone_hop
        self._phones = None
        if phone_hop is not None:
            self._phones = split_phones(split)

    def __len__(self) -> int:
        return len(self.split)

    def _audio(self, index: int) -> np.ndarray:
        if index in self._cache:
            return self._cache[index]
        # Only the audio column is read: the rest of the row (phones, text) is not needed here.
        cell = self.split.select_columns(["audio"])[index]["audio"]
        waveform = decode_audio(cell, self.sampling_rate, name=f"utterance {self._ids[index]}")
        if self.cache_audio:
            self._cache[index] = waveform
        return waveform

    def __getitem__(self, index: int) -> dict:
        try:
            waveform = self._audio(index)
        except AudioError as error:  # names the utterance and its file (decode_audio adds the path)
            if self.strict:
                raise
            return skipped_item(self._ids[index], error)
        speaker = self._speaker_ids[index] if self.speaker_index is not None else None
        item = crop_item(waveform, self.crop_samples, self.normalize, self.seed, self.epoch, index, self._ids[index],
                         speaker, self.speaker_index)
        if self.phone_hop is not None:
            offset = crop_offset(len(waveform), self.crop_samples, self.seed, self.epoch, index)
            item["phone_labels"] = crop_phone_labels(self._phones[index], offset, int(item["attention_mask"].sum()),
                                                     self.crop_samples, self.phone_hop, self.sampling_rate, self._ids[index])
        return item


def crop_offset(length: int, crop_samples: int, seed: int, epoch: int, number: int) -> int:
    """The first sample of example ``number``'s crop in ``epoch``: a function of ``(seed, epoch, number)`` only."""
    if length <= crop_samples:
        return 0
    return int(np.random.default_rng([seed, epoch, number]).integers(0, length - crop_samples + 1))


def crop_item(
    waveform: np.ndarray, crop_samples: int, normalize: bool, seed: int, epoch: int, number: int, utterance: str,
    speaker: Optional[str] = None, speaker_index: Optional[dict] = None,
) -> dict:
    """The training item of example ``number`` (its index in the split, or a number drawn from its id) in
    ``epoch``: a ``crop_samples``-long crop of ``waveform`` whose offset, like the item's ``example_seed``,
    is a function of ``(seed, epoch, number)`` only; zero-padded past the audio's end (``attention_mask``
    0 there) and, with ``normalize``, zero-mean unit-variance over its real samples. With
    ``speaker_index`` (``{speaker id: row}``) the item carries ``speaker_ids``, the row of ``speaker``
    (an unknown one raises an error naming ``utterance``)."""
    offset = crop_offset(len(waveform), crop_samples, seed, epoch, number)
    state = np.random.SeedSequence([seed, epoch, number, 1]).generate_state(2, dtype=np.uint32)
    example_seed = (int(state[0]) << 31) ^ int(state[1])  # 63 bits
    piece = waveform[offset : offset + crop_samples]
    real = len(piece)
    if normalize:
        piece = (piece - piece.mean()) / np.sqrt(piece.var() + 1e-7)
    values = np.zeros(crop_samples, dtype=np.float32)
    values[:real] = piece
    mask = np.zeros(crop_samples, dtype=np.int32)
    mask[:real] = 1
    item = {"input_values": values, "attention_mask": mask, "example_seed": example_seed}
    if speaker_index is not None:
        if speaker not in speaker_index:
            raise KeyError(f"utterance {utterance}: speaker {speaker!r} is not in the model's speaker list "
                           f"({len(speaker_index)} speakers)")
        item["speaker_ids"] = speaker_index[speaker]
    return item


def split_phones(split) -> list:
    """The ``phones`` column of ``split`` (``{"phone", "start", "end"}`` per utterance), refusing a split
    without phone alignments, and naming the first utterance that has none."""
    if "phones" not in split.column_names:
        raise ValueError(f"the split has no phone alignments (no `phones` column; columns: {split.column_names}): "
                         "a model trained with phone labels needs a corpus with them (built-in, or Libri-light's phones/)")
    phones = split["phones"]
    ids = split["id"] if "id" in split.column_names else [str(i) for i in range(len(split))]
    missing = [utt for utt, p in zip(ids, phones) if not p or not p["phone"]]
    if missing:
        raise ValueError(f"{len(missing)} of {len(ids)} utterances have no phone alignment (first: {missing[0]}); "
                         "a model trained with phone labels needs every utterance aligned")
    return phones


def crop_phone_labels(phones: dict, offset: int, real: int, crop_samples: int, hop: int, sampling_rate: int,
                      utterance: str) -> np.ndarray:
    """The phone id of each ``hop``-sample frame of a crop starting at sample ``offset`` with ``real`` real
    samples: frame ``t`` takes the segment holding time ``(offset + t * hop) / sampling_rate``; silence in
    gaps and past the last segment; ``-100`` for frames centred past the real audio."""
    from .phones import PHONE_TO_ID, SILENCE, normalize_phone

    frames = 1 + crop_samples // hop
    times = (offset + np.arange(frames) * hop) / sampling_rate
    labels = np.full(frames, PHONE_TO_ID[SILENCE], dtype=np.int64)
    starts, ends = np.asarray(phones["start"], dtype=np.float64), np.asarray(phones["end"], dtype=np.float64)
    try:
        ids = np.array([PHONE_TO_ID[normalize_phone(p)] for p in phones["phone"]], dtype=np.int64)
    except KeyError as error:
        raise ValueError(f"utterance {utterance}: phone {error.args[0]!r} is not in the phone inventory") from None
    segment = np.searchsorted(starts, times, side="right") - 1  # the last segment starting at or before t
    inside = (segment >= 0) & (times < ends[segment.clip(min=0)])
    labels[inside] = ids[segment[inside]]
    labels[np.arange(frames) * hop >= real] = -100
    return labels


def collate_crops(items: list[dict]) -> dict:
    """Stack equal-length crops: ``input_values`` ``(batch, samples)`` float32, ``attention_mask``
    ``(batch, samples)`` long, ``example_seeds`` ``(batch,)`` long, and ``speaker_ids`` ``(batch,)``
    long when the items carry them.

    Skipped items (:func:`repr_asr.data.skipping.skipped_item`) are left out of the tensors and listed as
    ``batch["skipped"]`` (``[{"id", "error"}, ...]``), a key present only when some item was skipped; a
    batch whose every item was skipped is just ``{"skipped": [...]}``."""
    items, skipped = split_skipped(items)
    if not items:
        return {SKIPPED_KEY: skipped}
    batch = {
        "input_values": torch.from_numpy(np.stack([item["input_values"] for item in items])),
        "attention_mask": torch.from_numpy(np.stack([item["attention_mask"] for item in items]).astype(np.int64)),
        "example_seeds": torch.tensor([item["example_seed"] for item in items], dtype=torch.long),
    }
    if "phone_labels" in items[0]:
        batch["phone_labels"] = torch.from_numpy(np.stack([item["phone_labels"] for item in items]).astype(np.int64))
    if "speaker_ids" in items[0]:
        batch["speaker_ids"] = torch.tensor([item["speaker_ids"] for item in items], dtype=torch.long)
    if skipped:
        batch[SKIPPED_KEY] = skipped
    return batch
