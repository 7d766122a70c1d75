"""Decode every audio file of a corpus up front and report all the bad ones at once.

A corpus loads from file headers only (fast), so a truncated FLAC or a WAV holding NaN passes
``load_corpus`` and surfaces hours later in a training step (where training skips it: see
:mod:`repr_asr.data.skipping`). ``load_corpus(spec, verify=True)`` — or, from a shell,
``python -m repr_asr.data.verify SPEC`` — decodes every utterance of every split first, with
:func:`repr_asr.audio.decode_audio` (so exactly the checks training applies: decodable, non-empty,
finite, float audio within ±``MAX_PEAK``), and raises one :class:`BadAudioError` listing every bad file
with its reason. The command line also lists files whose header cannot be read (zero-length ones: they
would stop ``load_corpus`` at the first) and the utterances of labeled splits whose transcript normalises
to nothing (:func:`find_empty_transcripts`).

Each file is decoded once even when nested splits share it (``train-10min`` ⊂ ``train-1h`` ⊂
``pretrain``, ``dev`` = ``dev-clean``, the built-in corpus' hard links): files are keyed by device and
inode, embedded audio bytes by their SHA-1. Audio is decoded at its own rate (no resampling), by a
small thread pool (libsndfile releases the GIL).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Optional, Sequence

from tqdm.auto import tqdm

from ..audio import AudioError, decode_audio
from .librispeech import CorpusError


@dataclass
class BadAudio:
    """One audio file that cannot be used: ``file`` (its path, or ``utterance ID (name)`` for audio
    embedded in the dataset), ``reason``, and the ``utterances`` / ``splits`` that use it."""

    file: str
    reason: str
    utterances: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.file}: {self.reason} [utterance {', '.join(self.utterances)}; splits {', '.join(self.splits)}]"


class BadAudioError(CorpusError):
    """Audio files of a corpus that cannot be decoded; ``bad_files`` lists them (:class:`BadAudio`)."""

    def __init__(self, source: str, bad_files: list[BadAudio], checked: int):
        self.bad_files = bad_files
        lines = "\n".join(f"  {bad}" for bad in bad_files)
        super().__init__(
            f"corpus {source}: {len(bad_files)} of {checked} audio files cannot be used "
            f"(fix or remove them; `python -m repr_asr.data.verify` lists them):\n{lines}"
        )


def _key_and_label(cell, utt_id: str, split: str, index: int) -> tuple[tuple, str]:
    """A key shared by every cell holding the same audio, and the name errors give that audio."""
    path = cell if isinstance(cell, (str, os.PathLike)) else cell.get("path") if isinstance(cell, dict) else None
    embedded = f"utterance {utt_id}" + (f" ({path})" if path else "")  # a path beside bytes may name no real file
    if isinstance(cell, dict) and cell.get("array") is not None:
        return ("array", split, index), embedded  # already decoded: cheap to check each time
    if isinstance(cell, dict) and cell.get("bytes"):
        return ("bytes", hashlib.sha1(cell["bytes"]).hexdigest()), embedded
    if path:
        try:
            st = os.stat(path)
            return ("file", st.st_dev, st.st_ino), str(path)  # hard links (built-in corpus) are one file
        except OSError:
            return ("file", os.path.abspath(path)), str(path)  # missing: decode_audio reports it
    return ("cell", split, index), f"utterance {utt_id}"


def _problem(cell, label: str) -> Optional[str]:
    """Why ``cell`` cannot be used, or None. Only :class:`AudioError` is a verdict on the file; any other
    exception is a bug and propagates."""
    try:
        decode_audio(cell, sampling_rate=None, name=label)
    except AudioError as error:
        message = str(error)
        return message[len(label) + 2 :] if message.startswith(f"{label}: ") else message
    return None


def find_bad_audio(corpus, num_workers: Optional[int] = None, progress: bool = True) -> tuple[list[BadAudio], int]:
    """Decode every audio cell of every split of ``corpus`` (a ``DatasetDict``; splits need an ``audio``
    column, ``id`` is used when present), each distinct file once.

    Returns ``(bad files in corpus order, number of distinct files checked)``. ``num_workers`` decoding
    threads (default ``min(8, cpu count)``); ``progress`` shows a tqdm bar over the utterances.
    """
    num_workers = num_workers or min(8, os.cpu_count() or 1)
    splits, seen_objects = [], set()
    for name, split in corpus.items():
        if id(split) in seen_objects or "audio" not in split.column_names:
            continue  # an alias (`dev` is `dev-clean`) is the same object: read it once
        seen_objects.add(id(split))
        splits.append((name, split))
    # The splits an alias stands for are still named in the report.
    names_of = {id(split): [n for n, s in corpus.items() if s is split] for _, split in splits}

    entries: dict[tuple, BadAudio] = {}  # key → the file, its users and (later) its reason
    order: list[tuple] = []
    reasons: dict[tuple, Optional[str]] = {}
    total = sum(len(split) for _, split in splits)
    with ThreadPoolExecutor(max_workers=num_workers) as pool, tqdm(
        total=total, desc="verifying audio", unit="utt", disable=not progress
    ) as bar:
        pending: dict = {}

        def drain(limit: int) -> None:
            while len(pending) > limit:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    reasons[pending.pop(future)] = future.result()
                    bar.update(1)

        for name, split in splits:
            columns = [c for c in ("id", "audio") if c in split.column_names]
            # Row by row: `split["audio"]` would load every embedded audio file into memory at once.
            for index, row in enumerate(split.select_columns(columns)):
                utt_id = str(row.get("id", index))
                key, label = _key_and_label(row["audio"], utt_id, name, index)
                entry = entries.get(key)
                if entry is None:
                    entry = entries[key] = BadAudio(label, "")
                    order.append(key)
                    pending[pool.submit(_problem, row["audio"], label)] = key
                    drain(4 * num_workers)  # bounded: embedded bytes wait in memory until decoded
                else:
                    bar.update(1)
                if utt_id not in entry.utterances:
                    entry.utterances.append(utt_id)
                for split_name in names_of[id(split)]:
                    if split_name not in entry.splits:
                        entry.splits.append(split_name)
        drain(0)
    bad = []
    for key in order:
        if reasons[key] is not None:
            entries[key].reason = reasons[key]
            bad.append(entries[key])
    return bad, len(order)


@dataclass
class EmptyTranscript:
    """An utterance of a labeled split (``train-*``, dev, test) whose transcript normalises to nothing (no
    letter or digit): no model can learn from it, and no error rate can be computed against it."""

    utterance: str
    splits: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"utterance {self.utterance}: transcript normalises to nothing (no letter or digit) [splits {', '.join(self.splits)}]"


def find_empty_transcripts(corpus) -> list[EmptyTranscript]:
    """The utterances of the labeled splits of ``corpus`` (``train-*``, ``dev*``, ``test*``, ``valid*``) whose
    ``text`` normalises to nothing, in corpus order, each once (with every split that holds it)."""
    from .librispeech import is_evaluation_split
    from .text import normalize_text

    found: dict[str, EmptyTranscript] = {}
    for name, split in corpus.items():
        if "text" not in split.column_names or not (is_evaluation_split(name) or name.startswith("train-")):
            continue
        ids = split["id"] if "id" in split.column_names else list(range(len(split)))
        for utt_id, text in zip(ids, split["text"]):
            if not normalize_text(text or ""):
                entry = found.setdefault(str(utt_id), EmptyTranscript(str(utt_id)))
                if name not in entry.splits:
                    entry.splits.append(name)
    return list(found.values())


def verify_corpus(corpus, num_workers: Optional[int] = None, progress: bool = True, source: Optional[str] = None) -> int:
    """Raise :class:`BadAudioError` listing every audio file of ``corpus`` that cannot be decoded (see
    :func:`find_bad_audio`); returns the number of distinct files checked when all are good."""
    bad, checked = find_bad_audio(corpus, num_workers=num_workers, progress=progress)
    if bad:
        raise BadAudioError(source or getattr(corpus, "source", "") or "<corpus>", bad, checked)
    return checked


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)  # true / 3 / null / {"validation": "dev"}
    except ValueError:
        return key, value  # a plain string


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m repr_asr.data.verify SPEC``: print every bad audio file (zero-length ones and others whose
    header cannot be read included) and every utterance of a labeled split whose transcript normalises to
    nothing; exit 1 when there are any, 2 when the corpus cannot be loaded at all, 0 when all is well."""
    parser = argparse.ArgumentParser(
        prog="python -m repr_asr.data.verify",
        description="Decode every audio file of a corpus and list those that cannot be used.",
    )
    parser.add_argument("spec", help="corpus spec, as --data takes it: librispeech:PATH, builtin:PATH or hf:NAME_OR_PATH")
    parser.add_argument(
        "--option", "-o", action="append", type=_option, default=[], metavar="KEY=VALUE",
        help="loader option (repeatable; VALUE is JSON or a string), e.g. -o allow_untranscribed=true -o audio_column=sound",
    )
    parser.add_argument("--num_workers", type=int, default=None, help="decoding threads (default min(8, cpus))")
    args = parser.parse_args(argv)

    from . import load_corpus
    from .librispeech import keep_unreadable_headers

    try:
        # A file whose header cannot be read would stop the load at the first one: it is decoded (and
        # listed) with all the others instead.
        with keep_unreadable_headers():
            corpus = load_corpus(args.spec, **dict(args.option))
    except (ValueError, TypeError) as error:  # CorpusError, a bad spec, an unknown loader option
        print(f"error: {error}", file=sys.stderr)
        return 2
    bad, checked = find_bad_audio(corpus, num_workers=args.num_workers)
    empty = find_empty_transcripts(corpus)
    for entry in [*bad, *empty]:
        print(entry)
    print(f"{args.spec}: {checked} audio files checked, {len(bad)} bad; {len(empty)} transcript(s) that normalise "
          "to nothing", file=sys.stderr)
    return 1 if bad or empty else 0


if __name__ == "__main__":
    sys.exit(main())
