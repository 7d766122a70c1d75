"""Pieces of the built-in corpus generator (:mod:`repr_asr.data.builtin`).

``text``: sentence generator; ``phonesets``: Festival / espeak-ng phones onto ARPAbet;
``voices``: the Festival and espeak-ng back-ends and speaker variation; ``effects``: vocal-tract
length, noise and reverberation.
"""
