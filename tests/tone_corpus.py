"""A tiny LibriSpeech-layout corpus of tones with phone alignments, built by the tests that need one
(ABX, code analysis): each "phone" is a tone whose pitch the speaker shifts, so phones are easy to tell
apart and speakers differ."""

from pathlib import Path
from typing import Optional

import datasets
import numpy as np
import soundfile

from repr_asr.data.phones import write_alignments

SR = 16000

TONES = {"AA": 500.0, "IY": 1500.0, "M": 250.0}


def alternating_phones(rng: np.random.Generator) -> list:
    """SIL M x M y M ... SIL with x, y in {AA, IY}: every other phone is M (ABX needs shared contexts)."""
    return ["SIL"] + [p for x in rng.choice(["AA", "IY"], size=6) for p in ("M", str(x))] + ["M", "SIL"]


def random_phones(rng: np.random.Generator) -> list:
    """SIL, ten phones drawn from {AA, IY, M}, SIL (the probes' corpus)."""
    return ["SIL"] + [str(p) for p in rng.choice(list(TONES), size=10)] + ["SIL"]


def build_tone_corpus(root: Path, subset: str = "dev-clean", utterances: int = 2, phones=alternating_phones,
                      shifts: tuple = (1.0, 1.1, 0.9, 1.2)) -> None:
    """``subset`` (a LibriSpeech folder name): 4 speakers (101, 102: F; 201, 202: M) × ``utterances``
    utterances of tones, the phone sequence drawn by ``phones(rng)``, each speaker's pitch scaled by its
    entry of ``shifts``."""
    rng = np.random.default_rng(0)
    alignments = {}
    for spk, shift in zip(("101", "102", "201", "202"), shifts):
        for u in range(utterances):
            utt = f"{spk}-1-{u:04d}"
            phones_drawn = phones(rng)
            t, segments, pieces = 0.0, [], []
            for p in phones_drawn:
                duration = round(float(rng.uniform(0.06, 0.1)), 2)
                n = int(duration * SR)
                time = np.arange(n) / SR
                wave = np.zeros(n) if p == "SIL" else 0.3 * np.sin(2 * np.pi * TONES[p] * shift * time)
                pieces.append(wave + 0.003 * rng.standard_normal(n))
                segments.append((p, round(t, 2), round(t + duration, 2)))
                t += duration
            folder = root / subset / spk / "1"
            folder.mkdir(parents=True, exist_ok=True)
            soundfile.write(str(folder / f"{utt}.flac"), np.concatenate(pieces).astype(np.float32), SR, subtype="PCM_16")
            with open(folder / f"{spk}-1.trans.txt", "a") as handle:
                handle.write(f"{utt} HELLO\n")
            alignments[utt] = segments
    (root / "SPEAKERS.TXT").write_text("".join(f"{s} | {g} | {subset} | 1.0 | N\n" for s, g in (("101", "F"), ("102", "F"), ("201", "M"), ("202", "M"))))
    write_alignments(root / "librispeech_finetuning" / "phones", alignments, subset=subset)


def save_labeled_tone_corpus(tones: Path, folder: Path, texts: Optional[dict] = None) -> str:
    """An ``hf:`` corpus saved into ``folder`` from the tone utterances of ``tones`` (a ``build_tone_corpus``
    root), text HELLO (or ``texts[utterance id]``): train = each speaker's first utterance, validation =
    speakers 10x's second, test = speakers 20x's second. Returns its spec."""
    files = sorted((tones / "dev-clean").rglob("*.flac"))
    texts = texts or {}

    def split(keep):
        chosen = [f for f in files if keep(f.stem)]
        return datasets.Dataset.from_dict({"id": [f.stem for f in chosen], "audio": [str(f) for f in chosen],
                                           "text": [texts.get(f.stem, "HELLO") for f in chosen],
                                           "speaker_id": [f.stem[:3] for f in chosen]})

    datasets.DatasetDict({
        "train": split(lambda u: u.endswith("0000")),
        "validation": split(lambda u: u.startswith("10") and u.endswith("0001")),
        "test": split(lambda u: u.startswith("20") and u.endswith("0001")),
    }).save_to_disk(str(folder))
    return f"hf:{folder}"
