"""Word and character error rates with jiwer, over a whole set (errors summed, not averaged per utterance)."""

from __future__ import annotations

from typing import Sequence

import jiwer


def _check(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[list[str], list[str]]:
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no utterances to score")
    for i, ref in enumerate(references):
        if not ref.strip():
            raise ValueError(f"reference {i} is empty: WER is undefined for it")
    return references, hypotheses


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: (substitutions + deletions + insertions) / reference words."""
    references, hypotheses = _check(references, hypotheses)
    return float(jiwer.wer(references, hypotheses))


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER over characters (spaces count as characters, as in jiwer)."""
    references, hypotheses = _check(references, hypotheses)
    return float(jiwer.cer(references, hypotheses))



def per(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus phone error rate: edit distance over space-separated phones / reference phones (jiwer's WER
    over phone strings, as Libri-light's PER and SUPERB's phone recognition count it)."""
    return wer(references, hypotheses)


def error_rates(references: Sequence[str], hypotheses: Sequence[str], unit: str = "char") -> dict:
    """The error rates a unit is scored with: ``{"per"}`` for phones, ``{"wer", "cer"}`` for characters and pieces."""
    if unit == "phone":
        return {"per": per(references, hypotheses)}
    return {"wer": wer(references, hypotheses), "cer": cer(references, hypotheses)}
