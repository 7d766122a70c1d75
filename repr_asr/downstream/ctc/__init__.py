"""CTC recognition (characters, sentencepiece pieces, phones) over any upstream: a downstream task.

* :mod:`.train`: the recipe's run (``run_finetune_ctc``), its data settings (``CTCDataConfig``) and
  ``load_ctc_config``; the model is :class:`repr_asr.models.upstream_ctc.UpstreamForCTC`;
* :mod:`.data`: labeled subsets, datasets and collators (audio or cached features);
* :mod:`.results`: ``results.json`` (the shared header, CER / WER / PER per split), transcripts and the
  ``final/`` model card's results.

Decoding (:mod:`repr_asr.evaluation.decoding`, :mod:`repr_asr.evaluation.transcribe`) and the metrics
(:mod:`repr_asr.evaluation.wer`) are shared with the analyses; the training loop is
:class:`repr_asr.training.Trainer`.
"""

from ...evaluation.transcribe import process_state, transcribe
from .data import AudioLabelCollator, AudioLabelDataset
from .train import SUBSETS, UNITS, VALIDATION_METRICS, CTCDataConfig, initialise_from, load_ctc_config, run_finetune_ctc

__all__ = [
    "AudioLabelCollator", "AudioLabelDataset", "CTCDataConfig", "SUBSETS", "UNITS", "VALIDATION_METRICS",
    "initialise_from", "load_ctc_config", "process_state", "run_finetune_ctc", "transcribe",
]
