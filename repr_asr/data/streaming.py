"""Streamed corpora: a ``datasets.IterableDataset`` read as training goes, for audio larger than RAM or disk.

``--data hf:NAME_OR_PATH --streaming`` (LibriSpeech 960 h, Libri-light 60k h) never decodes the corpus
up front and never needs its length: :func:`open_stream` opens one split as an ``IterableDataset``
(a hub dataset or a folder of data files through ``load_dataset(..., streaming=True)``, a
``save_to_disk`` folder through ``to_iterable_dataset``), and :class:`StreamingCropDataset` turns it
into the same random crops as :class:`~repr_asr.data.crops.RandomCropDataset`.

Sharding: the stream is split once over every (process, data-loader worker) pair, its readers, with
``datasets.distributed.split_dataset_by_node``: with a number of data files (shards) divisible by the
number of readers each reads its own files, otherwise each keeps one example in every N of what it
reads. Either way an epoch gives each example to exactly one reader.

Order and crops: the stream is shuffled with ``datasets``' shard shuffling and a shuffle buffer of
``shuffle_buffer`` examples, seeded by ``(seed, epoch)``; a crop's offset and augmentation seed depend
on ``(seed, epoch, the example's id)`` only, as in the map-style dataset.

Resume: a checkpoint records the batches consumed in the epoch. A ``DataLoader`` takes batches from
its workers in turn, so reader ``v`` of a process made batches ``v, v + W, ...``. On ``--resume`` after
``B`` batches, worker ``w`` takes over reader ``(w + B) mod W`` (the loader asks worker 0 first, and
batch ``B`` is that reader's), re-reads its stream from the epoch's start and passes over the examples
it had already put into batches without decoding them, so training continues with the very batches the
uninterrupted run would have seen. What is replayed is the reading
of those examples' encoded bytes, not their decoding or any training. One limit: once a worker's
shards run out before the others' (uneven shards, the epoch's tail), the round-robin order no longer
holds and a resume there may repeat or skip up to ``num_workers`` batches of that epoch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence

import datasets
import torch

from ..audio import DEFAULT_SAMPLING_RATE, AudioError, decode_audio
from .crops import CropSettings, crop_item
from .librispeech import CorpusError
from .skipping import skipped_item

# Our split names for what sources usually call otherwise (a source with no `pretrain` split pretrains on `train`).
SPLIT_FALLBACKS = {"pretrain": "train", "dev": "validation"}


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file() and (path / "state.json").is_file()


def open_stream(
    name_or_path: str,
    split: str = "train",
    audio_column: str = "audio",
    id_column: Optional[str] = "id",
    speaker_column: str = "speaker_id",
    config_name: Optional[str] = None,
    num_shards: int = 64,
    **load_kwargs,
) -> datasets.IterableDataset:
    """Split ``split`` of ``name_or_path`` as a ``datasets.IterableDataset`` with our columns: ``audio``
    (``Audio(decode=False)`` cells or paths, decoded per example by the crop dataset), ``id`` and, when the
    source has it, ``speaker_id``. ``split`` falls back to the source's usual name (``pretrain`` →
    ``train``, ``dev`` → ``validation``). A ``save_to_disk`` folder is streamed from its Arrow files in
    ``num_shards`` shards; anything else goes to ``load_dataset(name_or_path, config_name, split=...,
    streaming=True, **load_kwargs)`` (a hub name, or a local folder of parquet / audio files). Errors
    name the source, the split and what it has."""
    path = Path(name_or_path).expanduser()
    candidates = [split] + ([SPLIT_FALLBACKS[split]] if split in SPLIT_FALLBACKS else [])
    if path.is_dir() and _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({"train": loaded})
        found = next((s for s in candidates if s in loaded), None)
        if found is None:
            raise CorpusError(f"hf:{name_or_path}: no split {split!r} to stream (it has {sorted(loaded)})")
        table = loaded[found]
        stream = table.to_iterable_dataset(num_shards=max(1, min(num_shards, len(table))))
    else:
        stream, errors = None, []
        for candidate in candidates:
            try:
                stream = datasets.load_dataset(str(name_or_path), config_name, split=candidate, streaming=True, **load_kwargs)
                break
            except (ValueError, KeyError) as error:  # datasets says "Unknown split" / "Bad split" this way
                errors.append(f"{candidate}: {error}")
            except Exception as error:  # noqa: BLE001 - no such dataset, no network, unreadable files
                raise CorpusError(f"hf:{name_or_path}: cannot stream it ({type(error).__name__}: {error})") from error
        if stream is None:
            raise CorpusError(f"hf:{name_or_path}: no split {split!r} to stream ({'; '.join(errors)})")
    return _standardise_stream(stream, f"hf:{name_or_path}", audio_column, id_column, speaker_column)


def _standardise_stream(stream, source: str, audio_column: str, id_column: Optional[str], speaker_column: str):
    features = stream.features
    columns = list(features) if features is not None else None
    if columns is not None and audio_column not in columns:
        raise CorpusError(f"{source}: no column {audio_column!r} (option audio_column); columns are {columns}")
    if audio_column != "audio":
        stream = stream.rename_column(audio_column, "audio")
    if features is not None and isinstance(features[audio_column], datasets.Audio):
        stream = stream.cast_column("audio", datasets.Audio(decode=False))
    if id_column and id_column != "id" and columns is not None and id_column in columns:
        stream = stream.rename_column(id_column, "id")
    if speaker_column != "speaker_id" and columns is not None and speaker_column in columns:
        stream = stream.rename_column(speaker_column, "speaker_id")
    return stream


def stream_speakers(stream: datasets.IterableDataset, desc: str = "reading speaker ids") -> list[str]:
    """The sorted speaker ids of a stream: one pass over its ``speaker_id`` column only (for a
    speaker-conditioned model, whose embedding table needs the list before training)."""
    from tqdm.auto import tqdm

    if stream.features is not None and "speaker_id" not in stream.features:
        raise CorpusError(f"the stream has no speaker_id column (columns: {list(stream.features)}): "
                          "give the model's speakers (model.speakers) or turn speaker conditioning off")
    return sorted({str(row["speaker_id"]) for row in tqdm(stream.select_columns(["speaker_id"]), desc=desc, unit="utt")})


def example_key(row: dict) -> str:
    """The id an example is known by: its ``id``, else its audio file's path, else a hash of its bytes."""
    if row.get("id") is not None:
        return str(row["id"])
    audio = row.get("audio")
    if isinstance(audio, (str, os.PathLike)):
        return str(audio)
    if isinstance(audio, dict):
        if audio.get("path"):
            return str(audio["path"])
        if audio.get("bytes"):
            return hashlib.blake2b(audio["bytes"], digest_size=8).hexdigest()
    raise CorpusError(f"an example with neither an id nor audio bytes or path (keys {sorted(row)})")


def _key_number(key: str) -> int:
    """A stable 63-bit number for an example id (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def process_position() -> tuple[int, int]:
    """(rank, world size) of this process: the initialised process group, else the launcher's environment."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class StreamingCropDataset(CropSettings, torch.utils.data.IterableDataset):
    """``crop_samples``-long random crops of a streamed split (see the module docstring).

    Args:
        stream: a ``datasets.IterableDataset`` from :func:`open_stream` (columns ``audio``, ``id`` and,
            for ``speakers``, ``speaker_id``).
        crop_samples, seed, speakers, normalize, sampling_rate, strict: as for
            :class:`~repr_asr.data.crops.RandomCropDataset`.
        shuffle_buffer: examples in ``datasets``' shuffle buffer (0: the stream's order, shards unshuffled).
        rank / world_size: this process's place among the processes (default: :func:`process_position`
            when iteration starts, i.e. after the trainer has set up the process group).

    Items are those of ``RandomCropDataset`` plus ``id`` (``collate_crops`` stacks them alike).
    """

    def __init__(
        self,
        stream: datasets.IterableDataset,
        crop_samples: int,
        seed: int = 0,
        speakers: Optional[Sequence[str]] = None,
        normalize: bool = False,
        sampling_rate: int = DEFAULT_SAMPLING_RATE,
        strict: bool = False,
        shuffle_buffer: int = 1000,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        self._set_crop_settings(crop_samples, seed, speakers, normalize, sampling_rate, strict)
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.stream = stream
        self.shuffle_buffer = int(shuffle_buffer)
        self.rank, self.world_size = rank, world_size
        self.resume_batches, self.batch_size = 0, 1

    def skip_batches(self, batches: int, batch_size: int) -> None:
        """Begin the next iteration after the first ``batches`` batches of ``batch_size`` of this epoch
        (on resume; the Trainer calls it with 0 at every other epoch start)."""
        self.resume_batches, self.batch_size = int(batches), int(batch_size)

    def _position(self) -> tuple[int, int, int, int]:
        """(rank, processes, worker, workers) of the calling data-loader worker."""
        rank, world = process_position()
        rank = self.rank if self.rank is not None else rank
        world = self.world_size if self.world_size is not None else world
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank, world, worker, workers

    def examples(self):
        """This reader's share of the epoch's shuffled stream (undecoded rows)."""
        from datasets.distributed import split_dataset_by_node

        stream = self.stream
        if self.shuffle_buffer:
            stream = stream.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        rank, world, worker, workers = self._position()
        reader = (worker + self.resume_batches) % workers
        if world * workers > 1:
            stream = split_dataset_by_node(stream, rank=rank * workers + reader, world_size=world * workers)
        stream.set_epoch(self.epoch)  # after the split: split_dataset_by_node does not carry the epoch over
        # Batches reader, reader + workers, ... of those already consumed were this reader's.
        done = max(0, -(-(self.resume_batches - reader) // workers)) * self.batch_size
        # .iter() rather than iter(): inside a worker, iter() would split the stream over workers once more.
        for position, batch in enumerate(stream.iter(batch_size=1)):
            if position >= done:
                yield {name: values[0] for name, values in batch.items()}

    def __iter__(self):
        for row in self.examples():
            key = example_key(row)
            try:
                waveform = decode_audio(row["audio"], self.sampling_rate, name=f"utterance {key}")
            except AudioError as error:
                if self.strict:
                    raise
                yield skipped_item(key, error)
                continue
            speaker = str(row.get("speaker_id")) if self.speaker_index is not None else None
            item = crop_item(waveform, self.crop_samples, self.normalize, self.seed, self.epoch, _key_number(key), key,
                             speaker, self.speaker_index)
            item["id"] = key
            yield item
