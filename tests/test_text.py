"""Transcript normalisation."""

import pytest

from repr_asr.data.text import normalize_text

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, world!", "HELLO WORLD"),
        ("don’t   stop\tNOW", "DON'T STOP NOW"),
        ("“Quoted” 'words' here", "QUOTED WORDS HERE"),
        ("well-known; semi:colon", "WELL KNOWN SEMI COLON"),
        ("Café NAÏVE", "CAFE NAIVE"),
        ("HE SAID 42 TIMES", "HE SAID 42 TIMES"),
        ("  ", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_normalized_text_is_a_fixed_point():
    raw = "It's Mr. O'Neil's -- “best” day; isn't it?"
    once = normalize_text(raw)
    assert normalize_text(once) == once
    assert set(once) <= set(LETTERS + " ")

