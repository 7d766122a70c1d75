"""Phone inventory and phone alignments in Libri-light's ``librispeech_finetuning/phones/`` format.

The format (as released with Libri-light's limited-supervision sets, read by its ``eval/eval_PER.py``):

* ``phones_dir/phones_mapping.json`` — a JSON object ``{phone: integer id}``.
* one text file per subset, one utterance per line: ``UTT_ID id id id ...``, space separated, one
  integer id per 10 ms frame (100 Hz). Libri-light names them ``10h_phones.txt``, ``1h_phones.txt``,
  ``10min_phones.txt`` for the labeled subsets and ``dev-clean.txt``, ``dev-other.txt``,
  ``test-clean.txt``, ``test-other.txt`` for the evaluation sets; :func:`alignment_file_name` gives that
  name for a subset, and any other subset ``NAME`` is written to ``NAME.txt``.

Frame ``t`` covers ``[t * 0.01, (t + 1) * 0.01)`` seconds. Writing rounds segment boundaries to the nearest
frame (so timings survive to 10 ms), and :func:`read_alignments` merges runs of equal frames back into
``(phone, start, end)`` segments. Two adjacent segments of the same phone therefore come back as one
segment: the frame-wise format cannot tell them apart.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

from .text import read_lines

# The 39 ARPAbet phones of CMUdict without lexical stress, plus silence.
PHONES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
    "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V",
    "W", "Y", "Z", "ZH", "SIL",
)
SILENCE = "SIL"
PHONE_TO_ID: dict[str, int] = {phone: i for i, phone in enumerate(PHONES)}

FRAME_RATE = 100  # frames per second of the frame-wise alignment files
MAPPING_FILE = "phones_mapping.json"
# Libri-light's names for the alignment files of its labeled subsets.
_SUBSET_FILES = {"10h": "10h_phones.txt", "1h": "1h_phones.txt", "10min": "10min_phones.txt"}
# Silence / pause labels used by aligners and synthesisers (MFA "sil"/"sp"/"spn", TIMIT "h#",
# Festival "pau", empty MFA intervals).
_SILENCE_ALIASES = {"", "SIL", "SP", "SPN", "PAU", "H#", "<SIL>", "SILENCE"}

Segment = tuple[str, float, float]


class AlignmentError(ValueError):
    """A phone alignment that cannot be written or read; the message names the file and utterance."""


def alignment_file_name(subset: str) -> str:
    """File name of ``subset``'s alignments: ``"10h"`` → ``10h_phones.txt``, ``"dev-clean"`` → ``dev-clean.txt``."""
    if subset in _SUBSET_FILES:
        return _SUBSET_FILES[subset]
    if not subset or "/" in subset or os.sep in subset:
        raise AlignmentError(f"invalid alignment subset name {subset!r}")
    return f"{subset}.txt"


def normalize_phone(phone: str) -> str:
    """Map an aligner's phone label onto :data:`PHONES`: upper case, stress digits dropped
    (``ah0`` → ``AH``), silence/pause labels (``sil``, ``sp``, ``pau``, ``h#``, ``""``) → ``SIL``.
    Raises ``KeyError`` for a label outside the inventory."""
    label = re.sub(r"[0-2]$", "", phone.strip().upper())
    if label in _SILENCE_ALIASES:
        return SILENCE
    if label not in PHONE_TO_ID:
        raise KeyError(phone)
    return label


def _to_frames(utt_id: str, segments: Sequence[Segment]) -> list[int]:
    """Segments in seconds → one phone id per 10 ms frame. Gaps between segments are silence."""
    frames: list[int] = []
    previous_end = 0.0
    for index, segment in enumerate(segments):
        try:
            phone, start, end = segment
            start, end = float(start), float(end)
        except (TypeError, ValueError) as error:
            raise AlignmentError(f"utterance {utt_id}: segment {index} {segment!r} is not (phone, start_s, end_s)") from error
        try:
            phone_id = PHONE_TO_ID[normalize_phone(str(phone))]
        except KeyError:
            raise AlignmentError(
                f"utterance {utt_id}: segment {index} has phone {phone!r}, not one of the {len(PHONES)} phones "
                "of repr_asr.data.phones.PHONES"
            ) from None
        if not (0.0 <= start <= end):
            raise AlignmentError(f"utterance {utt_id}: segment {index} ({phone} {start}-{end} s) has start > end or start < 0")
        if start < previous_end - 0.5 / FRAME_RATE:
            raise AlignmentError(
                f"utterance {utt_id}: segment {index} ({phone} starts at {start} s) overlaps the previous one "
                f"(ends at {previous_end} s); segments must be sorted and disjoint"
            )
        previous_end = end
        first, last = round(start * FRAME_RATE), round(end * FRAME_RATE)
        if first > len(frames):  # a gap: fill with silence so frame t stays at time t / 100
            frames.extend([PHONE_TO_ID[SILENCE]] * (first - len(frames)))
        # Boundaries are rounded to frames; a rounding overlap of under half a frame is resolved
        # in favour of the later segment.
        del frames[first:]
        frames.extend([phone_id] * (last - first))
    return frames


def write_alignments(
    phones_dir: Union[str, os.PathLike],
    alignments: Mapping[str, Sequence[Segment]],
    subset: str = "all",
) -> Path:
    """Write ``{utt_id: [(phone, start_s, end_s), ...]}`` as frame-wise Libri-light alignments.

    Writes (or overwrites) ``phones_dir/<alignment_file_name(subset)>`` and ``phones_dir/phones_mapping.json``
    (the :data:`PHONES` ids). Phone labels go through :func:`normalize_phone`; boundaries are rounded to
    10 ms frames; gaps between segments are written as ``SIL``. An existing ``phones_mapping.json`` that
    differs from ours is an error, because the files already there would be read with the wrong ids.
    Returns the path of the alignment file.
    """
    phones_dir = Path(phones_dir)
    phones_dir.mkdir(parents=True, exist_ok=True)
    mapping_path = phones_dir / MAPPING_FILE
    if mapping_path.exists():
        existing = _read_mapping(mapping_path)
        if existing != {i: p for p, i in PHONE_TO_ID.items()}:
            raise AlignmentError(
                f"{mapping_path}: holds a phone mapping other than repr_asr.data.phones.PHONES; "
                "write these alignments into another folder"
            )
    else:
        with open(mapping_path, "w", encoding="utf-8") as handle:
            json.dump(PHONE_TO_ID, handle, indent=1)
    path = phones_dir / alignment_file_name(subset)
    lines = []
    for utt_id in sorted(alignments):
        if not utt_id or any(c.isspace() for c in utt_id):
            raise AlignmentError(f"{path}: utterance id {utt_id!r} is empty or contains whitespace")
        frames = _to_frames(utt_id, alignments[utt_id])
        lines.append(" ".join([utt_id, *map(str, frames)]) + "\n")
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return path


def _read_mapping(path: Path) -> dict[int, str]:
    try:
        with open(path, encoding="utf-8") as handle:
            mapping = json.load(handle)
        return {int(i): str(p) for p, i in mapping.items()}
    except (OSError, ValueError, AttributeError, TypeError) as error:
        raise AlignmentError(f"{path}: not a phone mapping ({{phone: id}} JSON object): {error}") from error


def frames_to_segments(frames: Iterable[str]) -> dict[str, list]:
    """Frame-wise phone labels at 100 Hz → ``{"phone": [...], "start": [...], "end": [...]}`` in seconds."""
    phones: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    for t, phone in enumerate(frames):
        if phones and phones[-1] == phone and round(ends[-1] * FRAME_RATE) == t:
            ends[-1] = (t + 1) / FRAME_RATE
        else:
            phones.append(phone)
            starts.append(t / FRAME_RATE)
            ends.append((t + 1) / FRAME_RATE)
    return {"phone": phones, "start": starts, "end": ends}


def read_alignments(phones_dir: Union[str, os.PathLike], files: Optional[Iterable[str]] = None) -> dict[str, dict[str, list]]:
    """Read frame-wise alignments back as ``{utt_id: {"phone": [...], "start": [...], "end": [...]}}``.

    Reads every ``*.txt`` in ``phones_dir`` (or only ``files``) with the ids of its ``phones_mapping.json``,
    so Libri-light's released folder reads as well as ours. Libri-light's phone labels are kept as the
    mapping spells them. An utterance that appears in several files (10min ⊂ 1h ⊂ 10h) must have the same
    frames in each. Errors name the file and line.
    """
    phones_dir = Path(phones_dir)
    mapping_path = phones_dir / MAPPING_FILE
    if not mapping_path.is_file():
        raise AlignmentError(f"{phones_dir}: no {MAPPING_FILE}; not a Libri-light phones folder")
    id_to_phone = _read_mapping(mapping_path)
    paths = sorted(phones_dir.glob("*.txt")) if files is None else [phones_dir / f for f in files]
    raw: dict[str, tuple[list[str], Path]] = {}
    for path in paths:
        # read_lines: a file that is not UTF-8 raises AlignmentError naming the file and line.
        for line_number, line in read_lines(path, AlignmentError):
            fields = line.split()
            if not fields:
                continue
            utt_id = fields[0]
            try:
                frames = [id_to_phone[int(x)] for x in fields[1:]]
            except (ValueError, KeyError) as error:
                raise AlignmentError(
                    f"{path}:{line_number}: utterance {utt_id}: phone id {error} is not an integer of {mapping_path.name}"
                ) from None
            if utt_id in raw and raw[utt_id][0] != frames:
                raise AlignmentError(
                    f"{path}:{line_number}: utterance {utt_id} has alignments different from those in {raw[utt_id][1]}"
                )
            raw[utt_id] = (frames, path)
    return {utt_id: frames_to_segments(frames) for utt_id, (frames, _) in raw.items()}


def phone_transcript(phones: Optional[Mapping], utterance: str = "?") -> str:
    """The phone sequence of an utterance's alignment as a transcript: its phones (:data:`PHONES`, stress
    dropped) separated by spaces, silences left out, as SUPERB's phone recognition and Libri-light's PER
    compare them. Raises :class:`AlignmentError` naming the utterance when it has no alignment."""
    labels = list((phones or {}).get("phone") or [])
    if not labels:
        raise AlignmentError(f"utterance {utterance!r} has no phone alignment: phone units need a corpus with phones "
                             "(the built-in corpus, or LibriSpeech with Libri-light's librispeech_finetuning/phones/)")
    try:
        names = [normalize_phone(p) for p in labels]
    except KeyError as error:
        raise AlignmentError(f"utterance {utterance!r}: phone {error.args[0]!r} is outside the inventory {list(PHONES)}") from None
    return " ".join(p for p in names if p != SILENCE)


def phone_transcripts(split) -> list[str]:
    """:func:`phone_transcript` of every utterance of a corpus split (a ``datasets.Dataset`` with ``phones``)."""
    if "phones" not in split.column_names:
        raise AlignmentError(f"the corpus has no phone alignments (columns: {split.column_names}): phone units need "
                             "the built-in corpus, or LibriSpeech with Libri-light's librispeech_finetuning/phones/")
    ids = split["id"] if "id" in split.column_names else [str(i) for i in range(len(split))]
    return [phone_transcript(p, str(u)) for p, u in zip(split["phones"], ids)]
