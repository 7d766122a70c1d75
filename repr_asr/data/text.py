"""Transcript normalisation (the LibriSpeech convention) and reading corpus text files."""

from __future__ import annotations

import os
import re
import unicodedata
from typing import Iterator, Union

# Typographic apostrophes and quotes that stand for "'" inside words.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})


def read_lines(path: Union[str, os.PathLike], error: type = ValueError) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` of a UTF-8 text file, numbered from 1 (a leading byte-order mark is dropped).

    A line that is not valid UTF-8 raises ``error`` (the caller's error class, e.g. ``CorpusError``)
    naming the file, the line and the offending byte, instead of a bare ``UnicodeDecodeError`` with no
    file name. Corpus text files (LibriSpeech transcripts, ``SPEAKERS.TXT``, alignments) are ASCII/UTF-8;
    guessing another encoding (latin-1 decodes any byte) would silently turn text into the wrong words,
    so the error says how to convert the file instead. An unreadable file raises ``error`` too.
    """
    try:
        handle = open(path, "rb")
    except OSError as os_error:
        raise error(f"{path}: cannot read ({os_error.strerror or os_error})") from os_error
    with handle:
        for line_number, raw in enumerate(handle, 1):
            if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as decode_error:
                byte = raw[decode_error.start : decode_error.start + 1]
                raise error(
                    f"{path}:{line_number}: not UTF-8 text (byte 0x{byte.hex()} at column {decode_error.start + 1}); "
                    f"corpus text files must be UTF-8 (or ASCII): convert it, e.g. "
                    f"`iconv -f latin1 -t utf-8 {os.path.basename(path)}` for a latin-1 file"
                ) from None
            yield line_number, line  # with its line ending, as open() gives lines


def normalize_text(text: str) -> str:
    """LibriSpeech-style transcript: upper case, letters, digits and apostrophes only, single spaces.

    Accents are folded to ASCII where Unicode can decompose them (``café`` → ``CAFE``); typographic
    apostrophes become ``'``; every other punctuation mark or symbol becomes a word break
    (``well-known`` → ``WELL KNOWN``); apostrophes that do not sit inside a word (quotes) are dropped.
    Digits are kept as digits (spelling numbers out needs a language-specific verbaliser).

    >>> normalize_text("  “Don’t,” she said -- café-au-lait!  ")
    "DON'T SHE SAID CAFE AU LAIT"
    """
    text = unicodedata.normalize("NFKD", str(text).translate(_APOSTROPHES))
    text = "".join(c for c in text if not unicodedata.combining(c))
    chars = [c if (c.isalnum() or c == "'") else " " for c in text.upper()]
    words = []
    for word in "".join(chars).split():
        word = word.strip("'")  # quotes around a word, not apostrophes inside it
        if word:
            words.append(re.sub(r"'+", "'", word))
    return " ".join(words)

