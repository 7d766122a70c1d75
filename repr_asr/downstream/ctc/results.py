"""What a CTC run writes once it has decoded: per-split WER / CER, the transcripts, the decoding settings,
``results.json``, ``hypotheses.json``, and the results in ``final/README.md``'s model card."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from ...evaluation.report import write_results
from ...evaluation.wer import cer, error_rates, wer
from ...training.model_card import add_ctc_results
from ...models import upstream_hub_id


def split_scores(ids: list[str], references: list[str], decoded: dict, skipped: int, unit: str = "char") -> tuple[dict, list[dict]]:
    """``(metrics, hypotheses)`` of one decoded split: whole-set WER / CER (greedy, and ``wer_lm`` / ``cer_lm``
    with beam search; PER for phone units), utterance and skipped counts; one ``{"id", "reference",
    "greedy"[, "lm"]}`` per utterance. ``decoded`` is ``transcribe``'s output; ``ids`` / ``references`` align
    with its ``indices``."""
    beam = bool(decoded["beam"])
    metrics = {**error_rates(references, decoded["greedy"], unit), "utterances": len(references), "skipped": skipped}
    if beam:
        metrics.update(wer_lm=wer(references, decoded["beam"]), cer_lm=cer(references, decoded["beam"]))
    hypotheses = [
        {"id": i, "reference": r, "greedy": g} | ({"lm": b} if beam else {})
        for i, r, g, b in zip(ids, references, decoded["greedy"], decoded["beam"] or [None] * len(references))
    ]
    return metrics, hypotheses


def decoding_record(data, lm, output_dir: Path) -> dict:
    """How the splits were decoded, for ``results.json``: greedy always; with an n-gram LM (``lm``, a
    ``repr_asr.evaluation.decoding.LMDecoding``) the LM file (as given for ``data.lm_path``, relative to the
    run folder when built from ``data.lm_text``), its format and unit, the lexicon, the beam width and the
    weights. Paths inside the run folder are written relative to it, so runs that differ only in their
    folder record the same setting."""
    if lm is None:
        return {"greedy": True, "beam_search": False}

    def shown(path: Optional[str]) -> Optional[str]:
        if path is None:
            return None
        inside = Path(os.path.abspath(path)).is_relative_to(os.path.abspath(output_dir))
        return os.path.relpath(path, output_dir) if inside else path

    return {
        "greedy": True, "beam_search": True,
        "lm_path": shown(lm.lm), "lm_format": lm.lm_format, "lm_unit": lm.unit,
        "lm_text": data.lm_text or None, "lm_order": data.lm_order if data.lm_text else None,
        "lexicon": data.lexicon or None, "lexicon_source": lm.lexicon_source, "lexicon_words": lm.lexicon_words,
        "beam_size": data.beam_size, "beam_threshold": data.beam_threshold,
        "lm_weight": data.lm_weight, "word_score": data.word_score,
    }


def eval_at(metrics_path: Path, step: int, name: str) -> Optional[float]:
    """``name`` from the evaluation record of ``step`` in ``metrics.jsonl`` (the Trainer writes one per evaluation)."""
    value = None
    if metrics_path.is_file():
        with open(metrics_path) as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("step") == step and name in record:
                    value = float(record[name])
    return value


def write_ctc_outputs(output_dir: Path, results: dict, hypotheses: dict) -> None:
    """``hypotheses.json``, ``results.json`` (atomically) and the results in ``final/README.md`` (main process only)."""
    with open(output_dir / "hypotheses.json", "w") as handle:
        json.dump(hypotheses, handle, indent=1)
    write_results(str(output_dir), results)
    card = output_dir / "final" / "README.md"
    if card.is_file():
        add_ctc_results(card, results, upstream_hub_id(results["upstream"]))
