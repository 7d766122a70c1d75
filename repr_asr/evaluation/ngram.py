"""Back-off n-gram language models (ARPA) from user text, for beam-search decoding.

Counting and Kneser-Ney smoothing are done by `kaldingram` (Kaldi's SRILM-compatible trainer; the
same result as ``ngram-count -ukndiscount -kn-modify-counts-at-end``). The ARPA file it writes is read
by KenLM inside torchaudio's ``ctc_decoder``.

Two kinds of LM, matching the two decoding modes of :mod:`repr_asr.evaluation.decoding`:

- ``unit="word"``: words, for lexicon decoding (the usual 4-gram word LM of LibriSpeech results);
- ``unit="token"``: the tokenizer's units (characters with ``|`` between words, or sentencepiece
  pieces), for lexicon-free decoding.
"""

from __future__ import annotations

import os
from typing import Iterable

from ..tokenization import normalize_transcript

MAX_DISCOUNT = 0.9  # see build_ngram


def lm_sentences(texts: Iterable[str], unit: str = "word", tokenizer=None) -> list[str]:
    """One space-separated line per non-empty text: words, or the tokenizer's token strings."""
    if unit not in ("word", "token"):
        raise ValueError(f"unit must be 'word' or 'token', got {unit!r}")
    if unit == "token" and tokenizer is None:
        raise ValueError("unit='token' needs the CTC tokenizer whose units the LM predicts")
    lines = []
    for text in texts:
        text = normalize_transcript(text)
        if not text:
            continue
        if unit == "word":
            lines.append(text)
        else:
            tokens = tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)
            lines.append(" ".join(tokens))
    if not lines:
        raise ValueError("no non-empty text to train an n-gram LM on")
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
    tmp = output_path + ".tmp"
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
        raise ValueError(f"cannot read LM text file {path}: {error}") from error


def arpa_vocabulary(path: str) -> list[str]:
    """The unigrams of an ARPA file (without ``<s>``, ``</s>``, ``<unk>``): the words a lexicon needs."""
    words, in_unigrams = [], False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                in_unigrams = line == "\\1-grams:"
                continue
            if in_unigrams and line:
                word = line.split()[1]
                if word not in ("<s>", "</s>", "<unk>"):
                    words.append(word)
    return words
