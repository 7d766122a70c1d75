"""Festival's and espeak-ng's phones mapped onto one inventory: 39 ARPAbet phones + ``SIL``.

The inventory is :data:`repr_asr.data.phones.PHONES` (the CMU dictionary's phones without stress,
plus silence). A source phone maps to one or more ARPAbet phones; a segment that maps to several
(syllabic ``el`` → AH L, espeak's ``aI@`` → AY ER) is split into equal parts. ``None`` means "no
segment of its own": its time is given to the phone before it (espeak's ``;`` palatal modifier).
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

ARPABET = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH".split()
)
SILENCE = "SIL"

try:  # the shared inventory, when the phones module is there; the same list otherwise
    from repr_asr.data.phones import PHONES as _SHARED_PHONES  # type: ignore

    PHONES = tuple(_SHARED_PHONES)
except ImportError:  # pragma: no cover - only while repr_asr.data.phones is being written
    PHONES = tuple(ARPABET + [SILENCE])

Mapping = Optional[Tuple[str, ...]]

# Festival's CMU / "radio" phone set (kal, ked and slt share it).
FESTIVAL_TO_ARPABET: Dict[str, Mapping] = {p.lower(): (p,) for p in ARPABET}
FESTIVAL_TO_ARPABET.update({
    "pau": (SILENCE,), "h#": (SILENCE,), "brth": (SILENCE,), "sil": (SILENCE,),
    "ax": ("AH",), "axr": ("ER",), "ix": ("IH",), "dx": ("T",),  # flaps are written T in the CMU dictionary
    "el": ("AH", "L"), "em": ("AH", "M"), "en": ("AH", "N"), "nx": ("N",), "hv": ("HH",),
})

# espeak-ng's English phoneme mnemonics (all accents), as its synthesis events name them.
ESPEAK_TO_ARPABET: Dict[str, Mapping] = {
    # vowels
    "@": ("AH",), "@-": ("AH",), "@2": ("AH",), "@5": ("AH",), "@L": ("AH", "L"), "V": ("AH",), "a#": ("AH",),
    "3": ("ER",), "3:": ("ER",), "VR": ("ER",), "IR": ("ER",), "@r": ("ER",),
    "a": ("AE",), "aa": ("AE",), "A:": ("AA",), "A@": ("AA",), "0": ("AA",), "A": ("AA",),
    "aI": ("AY",), "aI2": ("AY",), "aI3": ("AY",), "aI@": ("AY", "ER"), "aU": ("AW",), "aU@": ("AW", "ER"),
    "E": ("EH",), "e": ("EH",), "e@": ("EH",), "eI": ("EY",), "e#": ("EH",),
    "i": ("IY",), "i:": ("IY",), "I": ("IH",), "I#": ("IH",), "I2": ("IH",), "i@": ("IH",), "i@3": ("IH",),
    "O": ("AO",), "O:": ("AO",), "O@": ("AO",), "o@": ("AO",), "O2": ("AO",), "OI": ("OY",),
    "oU": ("OW",), "o": ("OW",), "o:": ("OW",), "@U": ("OW",),
    "U": ("UH",), "U@": ("UH",), "u:": ("UW",), "u": ("UW",), "u@": ("UW",),
    # consonants
    "D": ("DH",), "T": ("TH",), "N": ("NG",), "S": ("SH",), "Z": ("ZH",), "dZ": ("JH",), "tS": ("CH",),
    "h": ("HH",), "j": ("Y",), "r": ("R",), "r-": ("R",), "R": ("R",), "x": ("K",), "?": ("T",),
    "t#": ("T",), "t2": ("T",), "t[": ("T",), "d#": ("D",), "n-": ("N",), "l/": ("L",), "l-": ("L",), "w#": ("W",),
    "b": ("B",), "d": ("D",), "f": ("F",), "g": ("G",), "k": ("K",), "l": ("L",), "m": ("M",), "n": ("N",),
    "p": ("P",), "s": ("S",), "t": ("T",), "v": ("V",), "w": ("W",), "z": ("Z",),
    ";": None,
}


def map_festival(name: str) -> Mapping:
    """ARPAbet phones for a Festival segment name; raises ``KeyError`` naming it when unknown."""
    if name not in FESTIVAL_TO_ARPABET:
        raise KeyError(f"Festival phone {name!r} has no ARPAbet mapping")
    return FESTIVAL_TO_ARPABET[name]


# In espeak-ng's rhotic American voice the r-coloured vowels carry their /r/ (no separate ``r-``).
ESPEAK_RHOTIC = {
    "A@": ("AA", "R"), "O@": ("AO", "R"), "o@": ("AO", "R"), "e@": ("EH", "R"), "i@": ("IH", "R"),
    "i@3": ("IH", "R"), "U@": ("UH", "R"), "aI@": ("AY", "ER"), "aU@": ("AW", "ER"),
}
RHOTIC_ACCENTS = ("en-us",)


def map_espeak(name: str, rhotic: bool = False) -> Mapping:
    """ARPAbet phones for an espeak-ng phoneme mnemonic.

    ``rhotic`` selects the r-coloured readings of :data:`ESPEAK_RHOTIC` (American voice).
    Pauses (``_``, ``_:``, ``_!`` ...) are silence. An unlisted mnemonic is retried without espeak's
    modifiers (digits, ``#``, ``-``, ``[``, ``/``); one that still has no mapping raises ``KeyError``.
    """
    if name.startswith("_"):
        return (SILENCE,)
    if rhotic and name in ESPEAK_RHOTIC:
        return ESPEAK_RHOTIC[name]
    if name in ESPEAK_TO_ARPABET:
        return ESPEAK_TO_ARPABET[name]
    stripped = re.sub(r"[0-9#\-\[/;]", "", name)
    if stripped in ESPEAK_TO_ARPABET:
        return ESPEAK_TO_ARPABET[stripped]
    raise KeyError(f"espeak-ng phoneme {name!r} has no ARPAbet mapping")


def _check() -> None:
    for table in (FESTIVAL_TO_ARPABET, ESPEAK_TO_ARPABET, ESPEAK_RHOTIC):
        for source, target in table.items():
            if target is not None and not set(target) <= set(PHONES):
                raise AssertionError(f"{source!r} maps to {target}, outside repr_asr.data.phones.PHONES")


_check()
