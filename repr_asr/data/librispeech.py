"""LibriSpeech / Libri-light reader (also the reader of the built-in corpus, which uses the same layout).

Layout read from ``PATH`` (a LibriSpeech root, or the folder the LibriSpeech and Libri-light archives
unpack into, which holds ``LibriSpeech/`` and ``librispeech_finetuning/`` side by side: the ``root`` of
torchaudio's ``LIBRISPEECH`` and ``LibriLightLimited``; its ``LibriSpeech/`` is then read as the root):

* ``PATH/<split>/<SPK>/<CHAPTER>/<SPK>-<CHAPTER>-<UTT>.flac`` with ``<SPK>-<CHAPTER>.trans.txt`` beside them
  (``UTT_ID TRANSCRIPT`` per line); every folder of ``PATH`` laid out like this is a split
  (``train-clean-100``, ``dev-clean``, ...) and keeps its name. ``.wav`` files are accepted too.
* ``PATH/SPEAKERS.TXT`` (``ID | SEX | SUBSET | MINUTES | NAME``) gives genders; without it gender is ``""``.
* Libri-light's ``librispeech_finetuning/`` inside ``PATH`` or beside it (``PATH/..``):
  ``1h/{0..5}/{clean,other}`` and ``9h/{clean,other}``, each a tree like a split above, and
  ``phones/`` with frame-wise phone alignments (:mod:`repr_asr.data.phones`).

Splits of the result: every split folder under its own name, plus

* ``pretrain``: the ``train-*`` splits present, concatenated;
* ``train-10min`` = ``1h/<fold>`` (fold 0 by default; clean and other), ``train-1h`` = all of ``1h/``,
  ``train-10h`` = ``1h/`` + ``9h/``, as Libri-light defines them;
* ``dev`` = ``dev-clean``, ``test`` = ``test-clean``.

A split without data is left out of the result and asking for it raises :class:`MissingSplitError` saying what
is missing and where it was looked for; the splits that exist load normally. Audio is not decoded here:
``audio`` holds the file path (``repr_asr.audio.decode_audio`` reads it) and ``duration`` comes from the file
header (``soundfile.info``), read in parallel and cached (see :func:`audio_durations`).

Bad files: a transcript line whose audio file is missing, a malformed line, a duplicate utterance id, a
transcript or ``SPEAKERS.TXT`` that is not UTF-8, or an unreadable audio header raise :class:`CorpusError`
naming the file (and line). An utterance id in both a training split (``train-*``, Libri-light's subsets) and an
evaluation split (``dev-*``, ``test-*``) raises :class:`CorpusError` naming the id and both splits
(:func:`check_disjoint`). Audio itself is only decoded with ``verify=True`` (:mod:`repr_asr.data.verify`). An audio file without a
transcript line also raises, unless ``allow_untranscribed=True``, which keeps it with ``text=""`` (unlabeled
audio is fine for pretraining).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Union

import datasets
import soundfile

from .phones import read_alignments
from .text import normalize_text, read_lines

logger = logging.getLogger(__name__)

SPLITS = ("pretrain", "train-10h", "train-1h", "train-10min", "dev", "test")
AUDIO_EXTENSIONS = (".flac", ".wav")
FINETUNING_DIR = "librispeech_finetuning"
LIBRISPEECH_DIR = "LibriSpeech"  # the folder the LibriSpeech archives unpack into
_TRANS_NAME = re.compile(r"^(?P<spk>[^-\s]+)-(?P<chapter>[^-\s]+)\.trans\.txt$")

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "audio": datasets.Value("string"),
        "text": datasets.Value("string"),
        "speaker_id": datasets.Value("string"),
        "gender": datasets.Value("string"),
        "duration": datasets.Value("float64"),
        "phones": {
            "phone": datasets.List(datasets.Value("string")),
            "start": datasets.List(datasets.Value("float64")),
            "end": datasets.List(datasets.Value("float64")),
        },
    }
)


class CorpusError(ValueError):
    """A corpus that cannot be read; the message names the file, folder or split."""


def _manifest_reason(root: Path, split: str) -> str:
    """``" (<why>)"`` from a built-in corpus's manifest.json when it says why ``split`` is missing, else ``""``."""
    try:
        reason = json.loads((Path(root) / "manifest.json").read_text()).get("missing_labeled_subsets", {}).get(split)
    except (OSError, ValueError, AttributeError):
        return ""
    return f" ({reason})" if reason else ""


class MissingSplitError(CorpusError, KeyError):
    """Asked for a split the corpus has no data for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Corpus(datasets.DatasetDict):
    """A ``DatasetDict`` whose missing standard splits raise :class:`MissingSplitError` with the reason."""

    def __init__(self, *args, missing: Optional[dict[str, str]] = None, source: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.missing = dict(missing or {})
        self.source = source

    def __missing__(self, key):
        reason = getattr(self, "missing", {}).get(key, "no split of that name")
        available = ", ".join(sorted(self)) or "none"
        raise MissingSplitError(f"corpus {self.source}: no data for split {key!r}: {reason} (available: {available})")


def is_training_split(name: str) -> bool:
    """``pretrain``, ``train``, ``train-*``: splits a model learns from."""
    return name == "pretrain" or name.startswith("train")


def is_evaluation_split(name: str) -> bool:
    """``dev``, ``test``, ``dev-*``, ``test-*``, ``validation*``, ``valid*``: splits results are reported on."""
    return name.startswith(("dev", "test", "valid"))


def check_disjoint(splits: dict, source: str, show: int = 5) -> None:
    """Raise :class:`CorpusError` when an utterance id appears twice in one split, or in both a training
    split and an evaluation split (an evaluation utterance trained on inflates every result).

    ``splits`` maps names to datasets with an ``id`` column. Training splits may share ids with each
    other (Libri-light's labeled subsets are nested inside the pretraining data by design), and so may
    evaluation splits (``dev`` is ``dev-clean`` under another name). The error names up to ``show`` ids,
    their number, and the two splits.
    """
    ids: dict[str, list[str]] = {}
    for name, split in splits.items():
        if "id" not in split.column_names:
            continue
        ids[name] = [str(i) for i in split["id"]]
        counts: dict[str, int] = {}
        for utt_id in ids[name]:
            counts[utt_id] = counts.get(utt_id, 0) + 1
        twice = [utt_id for utt_id, n in counts.items() if n > 1]
        if twice:
            more = f" (and {len(twice) - show} more)" if len(twice) > show else ""
            raise CorpusError(
                f"corpus {source}: split {name!r} holds utterance id(s) {', '.join(twice[:show])}{more} more than once"
            )
    sets = {name: set(values) for name, values in ids.items()}
    for train in (n for n in sets if is_training_split(n)):
        for held_out in (n for n in sets if is_evaluation_split(n)):
            shared = sorted(sets[train] & sets[held_out])
            if shared:
                more = f" (and {len(shared) - show} more)" if len(shared) > show else ""
                raise CorpusError(
                    f"corpus {source}: utterance id(s) {', '.join(shared[:show])}{more} appear in both training split "
                    f"{train!r} and evaluation split {held_out!r}: evaluation data must not be trained on"
                )


def empty_phones() -> dict[str, list]:
    return {"phone": [], "start": [], "end": []}


# ------------------------------------------------------------------------------------------------
# durations


def _cache_root() -> Path:
    return Path(os.environ.get("REPR_ASR_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "repr_asr"))


# {file: reason} of the audio files whose header could not be read, while keep_unreadable_headers() is on.
_unreadable_headers: Optional[dict] = None


@contextlib.contextmanager
def keep_unreadable_headers():
    """Within the block, an audio file whose header cannot be read (a zero-length file, a truncated header)
    loads with duration 0 instead of stopping the load, and the block's ``{file: reason}`` dict names it.

    For ``python -m repr_asr.data.verify``, which then decodes every file and lists all the bad ones at
    once; everywhere else such a file stops the load (:func:`audio_durations`)."""
    global _unreadable_headers
    previous, _unreadable_headers = _unreadable_headers, {}
    try:
        yield _unreadable_headers
    finally:
        _unreadable_headers = previous


def unreadable_header(name: str, reason: str) -> float:
    """The duration given to a file whose header cannot be read: 0 (noted) within
    :func:`keep_unreadable_headers`, else a :class:`CorpusError` with ``reason``."""
    if _unreadable_headers is None:
        raise CorpusError(reason)
    _unreadable_headers[name] = reason
    return 0.0


def _header_duration(path: str) -> float:
    try:
        info = soundfile.info(path)
    except Exception as error:  # noqa: BLE001 - libsndfile raises several types
        raise CorpusError(f"{path}: cannot read the audio header ({error})") from error
    if info.frames <= 0:
        raise CorpusError(f"{path}: audio file holds no samples")
    return info.frames / info.samplerate


def _header_or_reason(path: str) -> tuple[float, Optional[str]]:
    try:
        return _header_duration(path), None
    except CorpusError as error:
        return 0.0, str(error)


def audio_durations(paths: list[str], cache: bool = True, num_threads: int = 8) -> list[float]:
    """Duration in seconds of each audio file, from its header.

    Headers are read by a thread pool (libsndfile releases the GIL). With ``cache`` the results are kept in
    ``$REPR_ASR_CACHE`` (default ``~/.cache/repr_asr``) ``/durations/<hash of the folder>.json``, keyed by
    path and validated by size and modification time, so reloading a large corpus reads no headers.
    """
    if not paths:
        return []
    stats = {}
    cached: dict = {}
    cache_file = None
    if cache:
        folder = os.path.commonpath([os.path.abspath(p) for p in paths])
        cache_file = _cache_root() / "durations" / (hashlib.sha1(folder.encode()).hexdigest()[:16] + ".json")
        try:
            cached = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cached = {}
    durations: dict[str, float] = {}
    todo = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as error:
            raise CorpusError(f"{path}: cannot read audio file ({error.strerror})") from error
        stats[path] = [st.st_size, st.st_mtime_ns]
        hit = cached.get(path)
        if hit is not None and hit[:2] == stats[path]:
            durations[path] = hit[2]
        else:
            todo.append(path)
    if todo:
        unreadable = {}
        with ThreadPoolExecutor(max_workers=max(1, min(num_threads, len(todo) // 64 + 1))) as pool:
            for path, (duration, reason) in zip(todo, pool.map(_header_or_reason, todo)):
                durations[path] = duration
                if reason is not None:
                    unreadable[path] = reason
        if unreadable and _unreadable_headers is None:  # every unreadable file at once, not the first one only
            reasons = list(unreadable.values())
            raise CorpusError(reasons[0] if len(reasons) == 1 else f"{len(reasons)} audio files cannot be read "
                              "(`python -m repr_asr.data.verify SPEC` lists every bad file):\n  " + "\n  ".join(reasons))
        for path, reason in unreadable.items():
            unreadable_header(path, reason)
        if cache_file is not None:
            cached.update({p: [*stats[p], durations[p]] for p in todo if p not in unreadable})
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(cached))
                os.replace(tmp, cache_file)
            except OSError as error:  # a read-only home is no reason to fail
                logger.warning("cannot write the duration cache %s: %s", cache_file, error)
    return [durations[p] for p in paths]


# ------------------------------------------------------------------------------------------------
# one LibriSpeech-style tree


def _scan_tree(root: Path, allow_untranscribed: bool) -> list[dict]:
    """Rows (without duration/gender/phones) of a ``SPK/CHAPTER/`` tree, sorted by utterance id."""
    rows = []
    seen: dict[str, Path] = {}
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for chapter_dir in sorted(p for p in speaker_dir.iterdir() if p.is_dir()):
            audio = {}
            transcripts = []
            for entry in os.scandir(chapter_dir):
                name = entry.name
                stem, ext = os.path.splitext(name)
                if ext.lower() in AUDIO_EXTENSIONS:
                    if stem in audio:
                        raise CorpusError(f"{chapter_dir}: utterance {stem} has two audio files ({audio[stem]}, {entry.path})")
                    audio[stem] = entry.path
                elif name.endswith(".trans.txt"):
                    transcripts.append(Path(entry.path))
            texts: dict[str, str] = {}
            for trans in sorted(transcripts):
                match = _TRANS_NAME.match(trans.name)
                prefix = f"{match['spk']}-{match['chapter']}-" if match else None
                for line_number, line in read_lines(trans, CorpusError):
                    if not line.strip():
                        continue
                    utt_id, _, text = line.strip().partition(" ")
                    if prefix and not utt_id.startswith(prefix):
                        raise CorpusError(
                            f"{trans}:{line_number}: utterance id {utt_id!r} does not start with {prefix!r} "
                            "(expected 'SPK-CHAPTER-UTT TRANSCRIPT')"
                        )
                    if utt_id in texts:
                        raise CorpusError(f"{trans}:{line_number}: utterance {utt_id} is transcribed twice")
                    if utt_id not in audio:
                        raise CorpusError(
                            f"{trans}:{line_number}: utterance {utt_id} has no audio file "
                            f"({chapter_dir / utt_id}{{{','.join(AUDIO_EXTENSIONS)}}} not found)"
                        )
                    texts[utt_id] = normalize_text(text)
            for utt_id in sorted(audio):
                if utt_id not in texts and not allow_untranscribed:
                    raise CorpusError(
                        f"{audio[utt_id]}: audio file without a transcript line in {chapter_dir}/*.trans.txt "
                        "(pass allow_untranscribed=True to keep it with empty text)"
                    )
                if utt_id in seen:
                    raise CorpusError(f"{audio[utt_id]}: utterance {utt_id} also appears as {seen[utt_id]}")
                seen[utt_id] = Path(audio[utt_id])
                rows.append(
                    {"id": utt_id, "audio": audio[utt_id], "text": texts.get(utt_id, ""), "speaker_id": speaker_dir.name}
                )
    rows.sort(key=lambda row: row["id"])
    return rows


def _is_split_dir(path: Path) -> bool:
    """A LibriSpeech split: ``SPK/CHAPTER/*.trans.txt`` below it (checked on the first speaker with a chapter)."""
    if not path.is_dir() or path.name == FINETUNING_DIR:
        return False
    for speaker_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        for chapter_dir in sorted(p for p in speaker_dir.iterdir() if p.is_dir()):
            if any(name.endswith(".trans.txt") for name in os.listdir(chapter_dir)):
                return True
    return False


def read_speakers(path: Path) -> dict[str, str]:
    """``SPEAKERS.TXT`` → ``{speaker_id: "M" | "F"}`` (``;`` lines are comments)."""
    genders = {}
    for line_number, line in read_lines(path, CorpusError):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 2 or fields[1].upper() not in ("M", "F"):
            raise CorpusError(f"{path}:{line_number}: expected 'ID | SEX | ...' with SEX M or F, got {line.strip()!r}")
        genders[fields[0]] = fields[1].upper()
    return genders


def _splits_root(path: Path) -> Path:
    """The folder holding the split folders: ``path``, or ``path/LibriSpeech`` when ``path`` is where the
    archives were unpacked (``LibriSpeech/`` beside ``librispeech_finetuning/``) and has no split of its own.
    Libri-light's folder is then found beside the splits' root, as when ``path/LibriSpeech`` is given."""
    nested = path / LIBRISPEECH_DIR
    if not nested.is_dir():
        return path
    if any(_is_split_dir(p) for p in path.iterdir() if p.name != LIBRISPEECH_DIR):
        return path
    return nested


def _find_finetuning(root: Path) -> Optional[Path]:
    for candidate in (root / FINETUNING_DIR, root.parent / FINETUNING_DIR):
        if candidate.is_dir():
            return candidate
    return None


def load_librispeech(
    path: Union[str, os.PathLike],
    builtin: bool = False,
    fold: int = 0,
    allow_untranscribed: bool = False,
    cache_durations: bool = True,
    with_phones: bool = True,
) -> Corpus:
    """Load a LibriSpeech root (and Libri-light's ``librispeech_finetuning/``) as a :class:`Corpus`.

    Args:
        path: the LibriSpeech root (the folder holding ``train-clean-100/``, ``dev-clean/``, ...), or the
            folder holding ``LibriSpeech/`` (and ``librispeech_finetuning/``), as the archives unpack.
        builtin: the root is the built-in corpus; a missing corpus then says how to build it.
        fold: which 10-minute fold of ``librispeech_finetuning/1h/`` is ``train-10min`` (0-5, default 0).
        allow_untranscribed: keep audio files that have no transcript line, with ``text=""``
            (default False: they raise :class:`CorpusError`).
        cache_durations: cache header durations (see :func:`audio_durations`).
        with_phones: fill ``phones`` from ``librispeech_finetuning/phones/`` when present.
    """
    given = Path(path).expanduser()
    root = _splits_root(given) if given.is_dir() else given
    has_corpus = root.is_dir() and (any(_is_split_dir(p) for p in root.iterdir()) or _find_finetuning(root) is not None)
    if not has_corpus:
        if builtin:
            raise CorpusError(
                f"no built-in corpus at {root}: build it with `python recipes/make_corpus.py --output_dir {root}`"
            )
        raise CorpusError(
            f"{root}: not a LibriSpeech root (expected split folders such as {root}/dev-clean/SPK/CHAPTER/*.trans.txt, "
            f"{root}/{LIBRISPEECH_DIR}/dev-clean/... or {root}/{FINETUNING_DIR}/)"
        )

    # Every tree to read: LibriSpeech splits and Libri-light's folds, each read once.
    trees: dict[str, Path] = {p.name: p for p in sorted(root.iterdir()) if _is_split_dir(p)}
    finetuning = _find_finetuning(root)
    folds: dict[str, list[str]] = {"1h": [], "9h": []}
    if finetuning is not None:
        for sub in sorted((finetuning / "1h").glob("*/*")) + sorted((finetuning / "9h").glob("*")):
            if sub.is_dir() and sub.name in ("clean", "other"):
                key = str(sub.relative_to(finetuning))
                trees[f"{FINETUNING_DIR}/{key}"] = sub
                folds[key.split("/")[0]].append(f"{FINETUNING_DIR}/{key}")

    rows_of = {name: _scan_tree(tree, allow_untranscribed) for name, tree in trees.items()}
    all_rows = [row for rows in rows_of.values() for row in rows]
    durations = audio_durations([row["audio"] for row in all_rows], cache=cache_durations)
    speakers_file = root / "SPEAKERS.TXT"
    genders = read_speakers(speakers_file) if speakers_file.is_file() else {}
    phones = {}
    if with_phones and finetuning is not None and (finetuning / "phones").is_dir():
        phones = read_alignments(finetuning / "phones")
    for row, duration in zip(all_rows, durations):
        row["duration"] = duration
        row["gender"] = genders.get(row["speaker_id"], "")
        row["phones"] = phones.get(row["id"], empty_phones())

    def build(names: list[str]) -> datasets.Dataset:
        rows = [row for name in names for row in rows_of[name]]
        ids = [row["id"] for row in rows]
        if len(set(ids)) != len(ids):
            first = next(i for i in ids if ids.count(i) > 1)
            where = [str(trees[n]) for n in names if any(r["id"] == first for r in rows_of[n])]
            raise CorpusError(f"utterance {first} appears in several folders: {', '.join(where)}")
        columns = {key: [row[key] for row in rows] for key in FEATURES}
        return datasets.Dataset.from_dict(columns, features=FEATURES)

    splits: dict[str, datasets.Dataset] = {}
    missing: dict[str, str] = {}
    for name in sorted(n for n in trees if not n.startswith(FINETUNING_DIR)):
        splits[name] = build([name])

    train_sets = sorted(n for n in splits if n.startswith("train"))
    if train_sets:
        splits["pretrain"] = build(train_sets)
    else:
        missing["pretrain"] = f"no train-* split folder under {root}"
    where = f"{root / FINETUNING_DIR} or {root.parent / FINETUNING_DIR}"
    fold_names = [n for n in folds["1h"] if n.split("/")[2] == str(fold)]
    # train-1h is all six 10-minute folds: with fewer it would be shorter than its name says (the
    # built-in corpus writes only the folds its pool can fill; manifest.json says why).
    present = {n.split("/")[2] for n in folds["1h"]}
    all_folds = present >= {str(k) for k in range(6)}
    one_hour = folds["1h"] if all_folds else []
    why_not = f"only folds {sorted(present)} of {FINETUNING_DIR}/1h/0-5 in {where}" if present else f"no {FINETUNING_DIR}/1h/ folds in {where}"
    why_not += _manifest_reason(root, "train-1h")
    labeled = {
        "train-10min": (fold_names, f"no {FINETUNING_DIR}/1h/{fold}/{{clean,other}} in {where}" + _manifest_reason(root, "train-10min")),
        "train-1h": (one_hour, why_not),
        "train-10h": (one_hour + folds["9h"] if folds["9h"] and one_hour else [],
                      f"needs all of {FINETUNING_DIR}/1h/0-5 and 9h/ in {where}" + _manifest_reason(root, "train-10h")),
    }
    for split, (names, reason) in labeled.items():
        if names:
            splits[split] = build(names)
        else:
            missing[split] = reason
    for split, original in (("dev", "dev-clean"), ("test", "test-clean")):
        if original in splits:
            splits[split] = splits[original]
        else:
            missing[split] = f"no {original}/ folder under {root}"
    source = f"{'builtin' if builtin else 'librispeech'}:{given}"  # as the spec named it
    # Original split names come first in `splits`, so a leak is reported between the folders it is in.
    check_disjoint(splits, source)
    if missing:
        logger.info("corpus %s: splits without data: %s", root, ", ".join(sorted(missing)))
    return Corpus(splits, missing=missing, source=source)
