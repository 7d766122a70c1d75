"""Corpora: LibriSpeech / Libri-light layouts, the built-in corpus, any Hugging Face dataset.

``load_corpus(spec)`` is the one entry point (CONTRIBUTING.md "Corpora" lists the splits and columns).
Submodules are imported on first use so ``import repr_asr.data`` stays cheap (no ``datasets`` import,
no file system work).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "CorpusError": "repr_asr.data.librispeech",
    "MissingSplitError": "repr_asr.data.librispeech",
    "Corpus": "repr_asr.data.librispeech",
    "SPLITS": "repr_asr.data.librispeech",
    "load_librispeech": "repr_asr.data.librispeech",
    "load_hf": "repr_asr.data.hf",
    "PHONES": "repr_asr.data.phones",
    "read_alignments": "repr_asr.data.phones",
    "write_alignments": "repr_asr.data.phones",
    "normalize_text": "repr_asr.data.text",
    "BadAudio": "repr_asr.data.verify",
    "BadAudioError": "repr_asr.data.verify",
    "find_bad_audio": "repr_asr.data.verify",
    "verify_corpus": "repr_asr.data.verify",
}

__all__ = sorted([*_LAZY, "load_corpus"])


def load_corpus(spec: str, verify: bool = False, **options):
    """Load a corpus from a ``--data`` spec as a ``datasets.DatasetDict``.

    ``spec`` is ``librispeech:PATH``, ``builtin:PATH`` (the built-in corpus, a LibriSpeech root) or
    ``hf:NAME_OR_PATH`` (a ``save_to_disk`` folder or a hub dataset); ``options`` go to the loader
    (:func:`repr_asr.data.librispeech.load_librispeech`, :func:`repr_asr.data.hf.load_hf`).

    Loading reads file headers only. With ``verify=True`` every utterance of every split is also decoded
    (each file once, with a progress bar) and one :class:`repr_asr.data.verify.BadAudioError` (a
    ``CorpusError``) lists every file that cannot be used (:func:`repr_asr.data.verify.verify_corpus`).
    """
    kind, sep, location = str(spec).partition(":")
    if not sep or not location:
        raise ValueError(f"corpus spec {spec!r} must be 'librispeech:PATH', 'builtin:PATH' or 'hf:NAME_OR_PATH'")
    if kind in ("librispeech", "builtin"):
        from .librispeech import load_librispeech

        corpus = load_librispeech(location, builtin=(kind == "builtin"), **options)
    elif kind == "hf":
        from .hf import load_hf

        corpus = load_hf(location, **options)
    else:
        raise ValueError(f"corpus spec {spec!r}: unknown kind {kind!r} (expected librispeech, builtin or hf)")
    if verify:
        from .verify import verify_corpus

        verify_corpus(corpus)
    return corpus


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'repr_asr.data' has no attribute {name!r}")
