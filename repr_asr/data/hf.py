"""Any Hugging Face ``datasets`` corpus with audio and text columns, mapped onto our columns and splits.

``hf:PATH`` reads a folder written by ``save_to_disk`` (a ``Dataset`` is taken as split ``train``);
``hf:NAME`` calls ``load_dataset(NAME, config_name)`` (needs the network or the local hub cache).

Columns (CONTRIBUTING.md "Corpora"): the source's ``audio_column`` becomes ``audio``, cast to
``datasets.Audio(decode=False)`` when it is an audio feature so cells stay ``{"bytes", "path"}`` and are
decoded by ``repr_asr.audio.decode_audio`` (``datasets`` 5 would otherwise need torchcodec/FFmpeg); a column of
path strings stays as is. ``text`` is normalised with :func:`repr_asr.data.text.normalize_text`. A missing
``id`` becomes ``SPLIT-000123``, a missing speaker or gender ``""``; genders ``m``/``male``/``f``/``female``
become ``M``/``F``. ``duration`` comes from a ``duration`` column if the source has one, else from the audio
header (bytes or file). ``phones`` is kept from a ``phones`` column of our struct format, else empty lists.

Splits: source splits are renamed by ``split_map`` (default ``validation``/``valid`` → ``dev``), and the source
names stay available too. Standard splits the source lacks are derived from the ``train`` split (or the only
split), with a seeded permutation (``seed``, default 0):

* ``test`` then ``dev``, if missing: a held-out ``heldout_fraction`` (default 5 %, at least one utterance)
  each, removed from what follows;
* ``pretrain``: the rest of ``train``;
* ``train-10h`` ⊃ ``train-1h`` ⊃ ``train-10min``: the longest prefixes of one permutation of that rest whose
  total duration stays within ``subset_seconds`` (default 36000 / 3600 / 600 s; at least one utterance), so
  they nest; a source smaller than the target gives all of it.

An id twice in one source split, or in both a training split (``train*``) and an evaluation split
(``dev*``, ``test*``, ``valid*``) of the source, raises :class:`CorpusError` naming the ids and the splits
(:func:`repr_asr.data.librispeech.check_disjoint`); sources whose ``id`` column only numbers the rows of each
split should be loaded with ``id_column=None``, which generates ``SPLIT-000123`` ids.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Optional

import datasets
import numpy as np
import soundfile

from ..audio import to_mono
from .librispeech import FEATURES, SPLITS, Corpus, CorpusError, check_disjoint, empty_phones, unreadable_header
from .text import normalize_text

logger = logging.getLogger(__name__)

DEFAULT_SPLIT_MAP = {"validation": "dev", "valid": "dev", "dev": "dev", "test": "test", "train": "train"}
DEFAULT_SUBSET_SECONDS = {"train-10h": 36000.0, "train-1h": 3600.0, "train-10min": 600.0}
_GENDERS = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}


def _cell_duration(cell, utt_id: str) -> float:
    try:
        if isinstance(cell, (str, os.PathLike)):
            info = soundfile.info(str(cell))
        elif isinstance(cell, dict) and cell.get("array") is not None:
            # Samples, not values: a (samples, channels) array holds `channels` values per sample.
            return len(to_mono(np.asarray(cell["array"]), f"utterance {utt_id}")) / float(cell["sampling_rate"])
        elif isinstance(cell, dict) and cell.get("bytes"):
            info = soundfile.info(io.BytesIO(cell["bytes"]))
        elif isinstance(cell, dict) and cell.get("path"):
            info = soundfile.info(cell["path"])
        else:
            raise ValueError(f"audio cell of type {type(cell).__name__} holds neither bytes nor a path")
    except Exception as error:  # noqa: BLE001 - libsndfile raises several types
        name = cell.get("path") if isinstance(cell, dict) else cell
        # A CorpusError, or duration 0 under keep_unreadable_headers() (verify then lists the file).
        return unreadable_header(f"utterance {utt_id} ({name})",
                                 f"utterance {utt_id} ({name}): cannot read the audio header ({error})")
    return info.frames / info.samplerate


def _standardise(
    ds: datasets.Dataset, split: str, audio_column: str, text_column: Optional[str], id_column: str,
    speaker_column: str, gender_column: str, normalize: bool,
) -> datasets.Dataset:
    columns = ds.column_names
    for role, column in (("audio_column", audio_column), ("text_column", text_column)):
        if column is not None and column not in columns:
            raise CorpusError(f"split {split!r}: no column {column!r} (option {role}); columns are {columns}")
    if isinstance(ds.features[audio_column], datasets.Audio):
        ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    elif not (isinstance(ds.features[audio_column], datasets.Value) and ds.features[audio_column].dtype == "string"):
        raise CorpusError(f"split {split!r}: column {audio_column!r} is {ds.features[audio_column]}, not audio or file paths")
    has = {name: (col if col in columns else None) for name, col in
           (("id", id_column), ("speaker", speaker_column), ("gender", gender_column))}
    has_duration = "duration" in columns
    has_phones = "phones" in columns and isinstance(ds.features["phones"], dict)

    def convert(batch, indices):
        n = len(indices)
        ids = [str(x) for x in batch[has["id"]]] if has["id"] else [f"{split}-{i:06d}" for i in indices]
        texts = [("" if t is None else normalize_text(t) if normalize else str(t)) for t in batch[text_column]] if text_column else [""] * n
        speakers = ["" if s is None else str(s) for s in batch[has["speaker"]]] if has["speaker"] else [""] * n
        genders = [_GENDERS.get(str(g).strip().lower(), "") for g in batch[has["gender"]]] if has["gender"] else [""] * n
        if has_duration:
            durations = [float(d) for d in batch["duration"]]
        else:
            durations = [_cell_duration(cell, utt) for cell, utt in zip(batch[audio_column], ids)]
        phones = batch["phones"] if has_phones else [empty_phones() for _ in range(n)]
        return {"id": ids, "text": texts, "speaker_id": speakers, "gender": genders, "duration": durations, "phones": phones}

    # Only the small columns are computed (in memory); the audio column is joined back untouched, so its
    # bytes are neither copied nor written as cache files into the source folder.
    features = datasets.Features({k: v for k, v in FEATURES.items() if k != "audio"})
    small = ds.map(
        convert, batched=True, with_indices=True, features=features, remove_columns=columns,
        keep_in_memory=True, desc=f"standardising {split}",
    )
    audio = ds.select_columns([audio_column])
    if audio_column != "audio":
        audio = audio.rename_column(audio_column, "audio")
    ds = datasets.concatenate_datasets([audio, small], axis=1)
    return ds.select_columns(list(FEATURES))


def _nested_prefixes(durations: np.ndarray, order: np.ndarray, targets: dict[str, float]) -> dict[str, np.ndarray]:
    """Longest prefix of ``order`` within each target total duration (at least one item)."""
    cumulative = np.cumsum(durations[order])
    return {name: order[: max(1, int(np.searchsorted(cumulative, seconds, side="right")))] for name, seconds in targets.items()}


def load_hf(
    name_or_path: str,
    audio_column: str = "audio",
    text_column: Optional[str] = "text",
    id_column: Optional[str] = "id",
    speaker_column: str = "speaker_id",
    gender_column: str = "gender",
    split_map: Optional[dict[str, str]] = None,
    config_name: Optional[str] = None,
    train_split: str = "train",
    seed: int = 0,
    heldout_fraction: float = 0.05,
    subset_seconds: Optional[dict[str, float]] = None,
    normalize: bool = True,
    **load_kwargs,
) -> Corpus:
    """Load a ``datasets`` corpus as a :class:`~repr_asr.data.librispeech.Corpus` (see the module docstring).

    Args:
        name_or_path: a ``save_to_disk`` folder, or a hub dataset name (``load_dataset``; needs the network).
        audio_column / text_column / id_column / speaker_column / gender_column: the source's column names
            (defaults ``audio``, ``text``, ``id``, ``speaker_id``, ``gender``); ``text_column=None`` for
            unlabeled audio. Absent id / speaker / gender columns give generated ids / ``""``;
            ``id_column=None`` generates ids even when the source has an ``id`` column.
        split_map: ``{source split: our split}``, merged over ``validation``/``valid`` → ``dev``.
        config_name: the hub dataset's configuration (``load_dataset``'s ``name``).
        train_split: the split (after renaming) that missing standard splits are derived from (default
            ``train``; a source with a single split uses it).
        seed: seed of the permutation behind every derived split (default 0).
        heldout_fraction: share of ``train_split`` held out for a missing ``dev`` / ``test`` (default 0.05).
        subset_seconds: target durations of the derived labeled subsets (default 36000 / 3600 / 600 s).
        normalize: normalise transcripts with ``normalize_text`` (default True).
        **load_kwargs: passed to ``load_dataset`` (``revision``, ``data_dir``, ``cache_dir``, ...).
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as error:  # noqa: BLE001 - datasets raises several types for a bad folder
            raise CorpusError(f"{path}: not a dataset saved with save_to_disk ({error})") from error
    else:
        try:
            loaded = datasets.load_dataset(name_or_path, config_name, **load_kwargs)
        except Exception as error:  # noqa: BLE001
            raise CorpusError(
                f"hf:{name_or_path}: no such folder, and load_dataset failed ({type(error).__name__}: {error})"
            ) from error
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})

    mapping = {**DEFAULT_SPLIT_MAP, **(split_map or {})}
    splits: dict[str, datasets.Dataset] = {}
    for source_name, ds in loaded.items():
        ds = _standardise(ds, source_name, audio_column, text_column, id_column, speaker_column, gender_column, normalize)
        splits[source_name] = ds
        target = mapping.get(source_name, source_name)
        if target != source_name:
            if target in loaded or target in splits and splits[target] is not ds:
                raise CorpusError(f"hf:{name_or_path}: split_map sends {source_name!r} onto {target!r}, which already exists")
            splits[target] = ds

    # Leaks are checked on the source's own splits: the splits derived below are disjoint by construction
    # (held-out sets leave the permutation before pretrain and the labeled subsets take from it), while
    # the source `train` they come from keeps all its rows, held-out ones included, by design.
    hint = (
        f" (if `{id_column}` is only a row number within each split, pass id_column=None to generate ids)"
        if id_column is not None else ""
    )
    try:
        check_disjoint(splits, f"hf:{name_or_path}")
    except CorpusError as error:
        raise CorpusError(f"{error}{hint}") from None

    missing: dict[str, str] = {}
    needed = [s for s in SPLITS if s not in splits]
    if needed:
        source = train_split if train_split in splits else (next(iter(splits)) if len(loaded) == 1 else None)
        if source is None:
            reason = f"not in the source and no {train_split!r} split to derive it from (splits: {sorted(splits)})"
            missing = {s: reason for s in needed}
        else:
            base = splits[source]
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(base))
            for split in ("test", "dev"):
                if split in needed:
                    if len(order) < 2:
                        missing[split] = f"split {source!r} is too small to hold out a {split} set"
                        continue
                    take = max(1, int(round(heldout_fraction * len(base))))
                    splits[split], order = base.select(np.sort(order[:take])), order[take:]
            if "pretrain" in needed:
                splits["pretrain"] = base.select(np.sort(order))
            durations = np.asarray(base["duration"], dtype=np.float64)
            targets = {**DEFAULT_SUBSET_SECONDS, **(subset_seconds or {})}
            for split, indices in _nested_prefixes(durations, order, targets).items():
                if split in needed:
                    splits[split] = base.select(np.sort(indices))
            logger.info("hf:%s: derived %s from split %r (seed %d)", name_or_path, ", ".join(needed), source, seed)
    return Corpus(splits, missing=missing, source=f"hf:{name_or_path}")
