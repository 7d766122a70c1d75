"""Back-off n-gram language models (ARPA) from user text, for beam-search decoding.

Counting and Kneser-Ney smoothing are done by `kaldingram` (Kaldi's SRILM-compatible trainer; the
same result as ``ngram-count -ukndiscount -kn-modify-counts-at-end``). The ARPA file it writes is read
by KenLM inside torchaudio's ``ctc_decoder``.

Two kinds of LM, matching the two decoding modes of :mod:`repr_asr.evaluation.decoding`:

- ``unit="word"``: words, for lexicon decoding (the usual 4-gram word LM of LibriSpeech results);
- ``unit="token"``: the tokenizer's units (characters with ``|`` between words, or sentencepiece
  pieces), for lexicon-free decoding.

A prebuilt word LM (the Libri-light / LibriSpeech convention: an ARPA file, or a KenLM binary made
from one with KenLM's ``build_binary``) is used as it is: :func:`lm_format` tells the two apart, and
:func:`arpa_vocabulary` gives an ARPA file's words for the lexicon when no lexicon comes with it.
"""

from __future__ import annotations

import os
from typing import Iterable

from ..data.text import normalize_text


class LMFileError(ValueError):
    """An LM, LM text or lexicon file that cannot be used; the message names the file and what is wrong."""


class LMFileNotFoundError(LMFileError, FileNotFoundError):
    """An LM or lexicon file that is not there."""

MAX_DISCOUNT = 0.9  # see build_ngram


def lm_sentences(texts: Iterable[str], unit: str = "word", tokenizer=None) -> list[str]:
    """One space-separated line per non-empty text: words, or the tokenizer's token strings."""
    if unit not in ("word", "token"):
        raise ValueError(f"unit must be 'word' or 'token', got {unit!r}")
    if unit == "token" and tokenizer is None:
        raise ValueError("unit='token' needs the CTC tokenizer whose units the LM predicts")
    lines = []
    for text in texts:
        text = normalize_text(text)
        if not text:
            continue
        if unit == "word":
            lines.append(text)
        else:
            tokens = tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)
            lines.append(" ".join(tokens))
    if not lines:
        raise LMFileError("no non-empty text to train an n-gram LM on")
    return lines


def build_ngram(
    texts: Iterable[str],
    output_path: str,
    order: int = 4,
    unit: str = "word",
    tokenizer=None,
) -> str:
    """Train a Kneser-Ney ``order``-gram (1..5) on ``texts`` and write it to ``output_path`` (ARPA, UTF-8).

    Texts are normalised like transcripts (upper case, single spaces) so the LM's vocabulary matches
    the model's output. Returns ``output_path``.
    """
    from kaldingram.train import NgramCounts

    if not 1 <= order <= 5:
        raise ValueError(f"n-gram order must be in 1..5, got {order}")
    counts = NgramCounts(order)
    for line in lm_sentences(texts, unit, tokenizer):
        counts.add_raw_counts_from_line(line)
    counts.cal_discounting_constants()
    # Kneser-Ney's D = n1 / (n1 + 2 n2) is 1 when no n-gram of an order occurs twice (tiny texts):
    # every seen n-gram would get probability 0 (-99 in the ARPA), and KenLM would use that entry
    # instead of backing off. Capping D keeps it a proper absolute discount; real corpora (D ~ 0.5-0.8)
    # are unaffected.
    counts.d = [min(d, MAX_DISCOUNT) for d in counts.d]
    counts.cal_f()
    counts.cal_bow()
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    tmp = f"{output_path}.{os.getpid()}.tmp"  # one per process: several may build the same LM at once
    with open(tmp, "w", encoding="utf-8") as f:
        counts.print_as_arpa(fout=f)
    os.replace(tmp, output_path)
    return output_path


def read_text_file(path: str) -> list[str]:
    """Lines of a user's LM text file (one sentence per line); names the file when it is unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line for line in f.read().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise LMFileError(f"cannot read LM text file {path}: {error}") from error


KENLM_MAGIC = b"mmap lm "  # the first bytes of every KenLM binary (lm/binary_format.cc)


def lm_format(path: str) -> str:
    """``"arpa"`` or ``"kenlm"`` (a KenLM binary, as ``build_binary`` writes it) for the n-gram file at
    ``path``; anything else is an error naming the file. Both load in the beam-search decoder."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as error:
        raise LMFileNotFoundError(f"cannot read language model {path}: {error}") from error
    if head.startswith(KENLM_MAGIC):
        return "kenlm"
    # An ARPA file opens with "\data\" (blank lines may come first).
    if head.lstrip().startswith(b"\\data\\"):
        return "arpa"
    if head[:2] == b"\x1f\x8b":
        raise LMFileError(f"{path}: a gzip file; decompress it first (gunzip) or convert it with KenLM's build_binary")
    raise LMFileError(f"{path}: neither an ARPA file (starting with \\data\\) nor a KenLM binary")


def arpa_vocabulary(path: str) -> list[str]:
    """The unigrams of an ARPA file (without ``<s>``, ``</s>``, ``<unk>``): the words a lexicon needs when
    a prebuilt ARPA LM comes without one (``data.lm_path`` without ``data.lexicon``)."""
    words, in_unigrams = [], False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line.startswith("\\"):
                if in_unigrams:
                    break  # the unigrams are all read; the higher orders hold no new word
                in_unigrams = line == "\\1-grams:"
                continue
            if in_unigrams and line:
                fields = line.split()
                if len(fields) < 2:
                    raise LMFileError(f"{path}:{number}: malformed unigram line {line!r}")
                if fields[1] not in ("<s>", "</s>", "<unk>"):
                    words.append(fields[1])
    if not words:
        raise LMFileError(f"{path}: no unigram in the ARPA file's \\1-grams: section")
    return words
