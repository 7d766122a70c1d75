"""Evaluation: WER/CER (``wer``), CTC decoding (``decoding``), n-gram LMs for beam search (``ngram``),
and comparison tables (``report``).

Submodules are imported on use (``from repr_asr.evaluation.decoding import greedy_decode``) so that
importing the package never loads the beam-search backend.
"""
