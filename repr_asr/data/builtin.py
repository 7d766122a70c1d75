"""The built-in corpus: multi-speaker English read speech synthesised locally, in the LibriSpeech layout.

``build_corpus(output_dir, hours, seed, num_workers)`` (and ``recipes/make_corpus.py``) writes::

    DIR/train-clean-100/SPK/CH/SPK-CH-UUUU.flac + SPK-CH.trans.txt   unlabeled pretraining pool
    DIR/dev-clean/...  DIR/test-clean/...                             held-out speakers (one set each)
    DIR/SPEAKERS.TXT                                                  ID | SEX | SUBSET | MINUTES | NAME
    DIR/librispeech_finetuning/1h/{0..5}/clean/SPK/CH/...             six "10-minute" folds
    DIR/librispeech_finetuning/9h/clean/SPK/CH/...                    the rest of the "10 h" set
    DIR/librispeech_finetuning/phones/                                frame-wise phone alignments, every utterance
    DIR/manifest.json                                                 versions, arguments, counts and durations
    DIR/.synthesis/                                                   per-task records that make re-runs resume

How ``--hours`` H is split (by duration; the pool/dev/test split is planned from estimated
durations, the labeled subsets are chosen afterwards from the real ones):

* ``train-clean-100`` (pretraining pool): 80 % of H; ``dev-clean`` 10 %; ``test-clean`` 10 %.
* Labeled subsets, nested inside the pool as Libri-light's are inside LibriSpeech's training data
  (their files are hard links to the pool's), and as long as their names say: six folds ``1h/0`` ..
  ``1h/5`` of 10 minutes each and ``9h`` of nine hours, so ``train-10min`` (fold 0) holds 10 minutes,
  ``train-1h`` one hour and ``train-10h`` ten hours, each within 5 %. A pool too small for a subset
  does not get it: below 10 minutes there is no labeled subset, below an hour only ``train-10min``,
  below ten hours no ``train-10h``; ``manifest.json`` lists what is missing and why.

Speakers: ``max(4, round(32 * sqrt(H)))`` training speakers (at most 200) and
``2 * clamp(round(2 * H), 1, 10)`` speakers each for dev and test, half of each gender, appearing
nowhere else. Each speaker is a base voice (Festival kal / ked / slt, or an espeak-ng English accent
with a voice variant) with its own speaking rate, pitch and vocal-tract-length factor. Each
utterance gets silence padding, and on part of the data additive noise (white, pink, brown, hum,
speech-shaped babble) at 5-30 dB SNR and synthetic room reverberation (RT60 0.15-0.6 s), and a
random level. Everything is drawn from ``seed`` before synthesis starts, so the corpus does not
depend on ``num_workers``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile
from tqdm.auto import tqdm

from .synthesis.effects import NOISE_TYPES, Effects, apply_effects, apply_vtl, quantize_segments, scale_segments
from .synthesis.text import SentenceGenerator
from .synthesis.voices import (
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    FESTIVAL_VOICES,
    Speaker,
    espeak_version,
    festival_version,
    synthesize,
)

GENERATOR_VERSION = "4"  # bump when the same (hours, seed) would give different audio or labels
SAMPLING_RATE = 16000
SPLIT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}
SPLIT_DIRS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
NUM_FOLDS = 6  # Libri-light's 1h = six 10-minute folds
FOLD_SECONDS = 600.0  # a fold holds 10 minutes
NINE_HOURS_SECONDS = 9 * 3600.0  # the rest of the 10 h set
SUBSET_TOLERANCE = 0.05  # a subset is offered only when it is within 5 % of its nominal duration
FINETUNING_DIR = "librispeech_finetuning"
WORK_DIR = ".synthesis"
FESTIVAL_SHARE = 0.3  # share of speakers built on a Festival voice (the rest on espeak-ng)
TASK_SIZE = 8  # utterances per work item (one Festival process each)
CHAPTER_SIZE = 40  # utterances per chapter folder
# Seconds of speech per word at rate 1 and vtl 1 (measured on a 1-hour build), to plan durations.
SECONDS_PER_WORD = {"festival": 0.43, "espeak": 0.34}
NOISE_PROBABILITY, REVERB_PROBABILITY = 0.6, 0.35


class CorpusExistsError(RuntimeError):
    """The output folder holds a corpus built with other arguments (or other files)."""


@dataclass
class Utterance:
    utt_id: str
    speaker_id: str
    chapter_id: str
    split: str
    prompt: str
    text: str
    effects: Effects

    @property
    def relative_path(self) -> str:
        return f"{SPLIT_DIRS[self.split]}/{self.speaker_id}/{self.chapter_id}/{self.utt_id}.flac"


@dataclass
class CorpusPlan:
    hours: float
    seed: int
    speakers: List[Speaker]
    utterances: List[Utterance]
    vocabulary_size: int


def speaker_counts(hours: float) -> Dict[str, int]:
    """Speakers per split for a corpus of ``hours`` (see the module docstring)."""
    held_out = 2 * min(10, max(1, round(2 * hours)))
    return {"train": max(4, min(200, round(32 * math.sqrt(hours)))), "dev": held_out, "test": held_out}


def _draw_speaker(rng: np.random.Generator, speaker_id: str, gender: str, split: str) -> Speaker:
    # Vocal-tract factors stay within about +-10 %: a larger shift would cross the gender boundary.
    vtl = float(rng.uniform(0.95, 1.1) if gender == "F" else rng.uniform(0.9, 1.05))
    if rng.random() < FESTIVAL_SHARE:
        voices = [name for name, (_, g) in FESTIVAL_VOICES.items() if g == gender]
        voice = voices[int(rng.integers(len(voices)))]
        rate = float(rng.uniform(0.85, 1.2))
        if voice == "slt":  # HTS: half-tone shift of the generated F0 contour
            pitch, pitch_range = float(rng.uniform(-3.0, 3.0)), 0.0
        else:  # diphone voices: mean and spread of the target F0 (Hz)
            pitch, pitch_range = float(rng.uniform(85.0, 140.0)), float(rng.uniform(8.0, 28.0))
        return Speaker(speaker_id, gender, "festival", voice, rate, pitch, pitch_range, vtl, split)
    accent = ESPEAK_ACCENTS[int(rng.integers(len(ESPEAK_ACCENTS)))]
    variants = ESPEAK_VARIANTS[gender]
    voice = f"{accent}+{variants[int(rng.integers(len(variants)))]}"
    rate, pitch, pitch_range = float(rng.uniform(0.8, 1.25)), float(rng.uniform(25, 75)), float(rng.uniform(20, 85))
    return Speaker(speaker_id, gender, "espeak", voice, rate, pitch, pitch_range, vtl, split)


def _draw_effects(rng: np.random.Generator) -> Effects:
    noise = NOISE_TYPES[int(rng.integers(len(NOISE_TYPES)))] if rng.random() < NOISE_PROBABILITY else None
    return Effects(
        lead_s=float(rng.uniform(0.05, 0.35)),
        tail_s=float(rng.uniform(0.05, 0.35)),
        noise=noise,
        snr_db=float(rng.uniform(5.0, 30.0)),
        rt60=float(rng.uniform(0.15, 0.6)) if rng.random() < REVERB_PROBABILITY else None,
        peak=float(rng.uniform(0.3, 0.95)),
        seed=int(rng.integers(2**31 - 1)),
    )


def plan_corpus(hours: float, seed: int = 0, generator: Optional[SentenceGenerator] = None) -> CorpusPlan:
    """Speakers, sentences and effects of the corpus, all drawn from ``seed`` (no synthesis)."""
    if not hours > 0:
        raise ValueError(f"hours must be positive, got {hours}")
    generator = generator or SentenceGenerator()
    speaker_rng = np.random.default_rng([seed, 1])
    text_rng = np.random.default_rng([seed, 2])
    effects_rng = np.random.default_rng([seed, 3])

    counts = speaker_counts(hours)
    total = sum(counts.values())
    ids = sorted(int(i) for i in speaker_rng.choice(np.arange(100, 10000), size=total, replace=False))
    speaker_rng.shuffle(ids)
    speakers: List[Speaker] = []
    for split, count in counts.items():
        genders = ["F", "M"] * (count // 2) + [["F", "M"][int(speaker_rng.integers(2))]] * (count % 2)
        speaker_rng.shuffle(genders)
        for gender in genders:
            speakers.append(_draw_speaker(speaker_rng, str(ids[len(speakers)]), gender, split))

    seen = set()  # every sentence is used once, so dev/test sentences never occur in training
    utterances: List[Utterance] = []
    chapter_ids = iter(int(c) for c in speaker_rng.choice(np.arange(10000, 400000), size=100000, replace=False))
    for speaker in speakers:
        share = hours * 3600.0 * SPLIT_FRACTIONS[speaker.split] / counts[speaker.split]
        planned, index, chapter = 0.0, 0, None
        while planned < share or index == 0:
            sentence = generator.sentence(text_rng)
            while sentence.text in seen:
                sentence = generator.sentence(text_rng)
            seen.add(sentence.text)
            effects = _draw_effects(effects_rng)
            if index % CHAPTER_SIZE == 0:
                chapter = str(next(chapter_ids))
            utt_id = f"{speaker.speaker_id}-{chapter}-{index % CHAPTER_SIZE:04d}"
            utterances.append(Utterance(utt_id, speaker.speaker_id, chapter, speaker.split, sentence.prompt, sentence.text, effects))
            words = len(sentence.text.split())
            planned += words * SECONDS_PER_WORD[speaker.backend] / (speaker.rate * speaker.vtl) + effects.lead_s + effects.tail_s
            index += 1
    return CorpusPlan(hours, seed, speakers, utterances, generator.vocabulary_size)


# ------------------------------------------------------------------------------------- synthesis
def _render(speaker: Speaker, utterance: Utterance, synthesis) -> Tuple[np.ndarray, List[Tuple[str, float, float]]]:
    """Synthesiser output → final 16 kHz waveform and phone segments tiling it."""
    audio, scale = apply_vtl(synthesis.audio, synthesis.sampling_rate, speaker.vtl, SAMPLING_RATE)
    segments = scale_segments(synthesis.segments, scale, len(audio) / SAMPLING_RATE)
    audio, segments = apply_effects(audio, segments, utterance.effects, SAMPLING_RATE)
    return audio, quantize_segments(segments, len(audio), SAMPLING_RATE)


def _run_task(job: Tuple[str, int, dict, List[dict]]) -> List[dict]:
    """Synthesise one speaker's chunk of utterances, or reuse it when it is already on disk."""
    output_dir, task_id, speaker_fields, utterance_fields = job
    root = Path(output_dir)
    record_path = root / WORK_DIR / "tasks" / f"{task_id:05d}.json"
    utterances = [Utterance(**{**u, "effects": Effects(**u["effects"])}) for u in utterance_fields]
    if record_path.is_file():
        with open(record_path) as handle:
            records = json.load(handle)
        if [r["id"] for r in records] == [u.utt_id for u in utterances] and all(
            (root / u.relative_path).is_file() for u in utterances
        ):
            return records
    speaker = Speaker(**speaker_fields)
    records = []
    for utterance, synthesis in zip(utterances, synthesize(speaker, [u.prompt for u in utterances])):
        audio, segments = _render(speaker, utterance, synthesis)
        path = root / utterance.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        soundfile.write(tmp, audio, SAMPLING_RATE, subtype="PCM_16", format="FLAC")
        os.replace(tmp, path)
        records.append({
            "id": utterance.utt_id,
            "duration": len(audio) / SAMPLING_RATE,
            "phones": [[p, round(s, 6), round(e, 6)] for p, s, e in segments],
            "unmapped": synthesis.unmapped,
        })
    tmp = record_path.with_name(record_path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(records, handle)
    os.replace(tmp, record_path)
    return records


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; torch's own threads would oversubscribe


# ---------------------------------------------------------------------------------------- layout
def _write_transcripts(base: Path, utterances: Sequence[Utterance]) -> None:
    """``base/SPK/CH/SPK-CH.trans.txt`` for ``utterances`` (files below ``base`` already exist)."""
    chapters: Dict[Tuple[str, str], List[Utterance]] = {}
    for u in utterances:
        chapters.setdefault((u.speaker_id, u.chapter_id), []).append(u)
    for (spk, ch), items in chapters.items():
        path = base / spk / ch / f"{spk}-{ch}.trans.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{u.utt_id} {u.text}\n" for u in sorted(items, key=lambda u: u.utt_id)))


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:  # file systems without hard links
        shutil.copyfile(source, target)


def choose_labeled_subsets(pool: Sequence[str], durations: Dict[str, float], seed: int) -> Dict[str, List[str]]:
    """Libri-light's nested subsets of the pool, as long as their names: ``1h/0`` .. ``1h/5`` (10 minutes
    each) and ``9h`` (nine hours), as utterance ids.

    Utterances are taken in a seeded random order; one is added while it brings the subset closer to
    its target. Subsets are filled in order (fold 0, folds 1-5, then 9h) and filling stops at the first
    one the rest of the pool cannot bring within :data:`SUBSET_TOLERANCE` of its target; that one and
    the ones after it are left out (see :func:`missing_subsets`).
    """
    order = sorted(pool)
    np.random.default_rng([seed, 4]).shuffle(order)
    targets = [(f"1h/{k}", FOLD_SECONDS) for k in range(NUM_FOLDS)] + [("9h", NINE_HOURS_SECONDS)]
    subsets: Dict[str, List[str]] = {}
    cursor = 0
    for name, target in targets:
        chosen, total, start = [], 0.0, cursor
        while cursor < len(order) and (not chosen or total + durations[order[cursor]] / 2 <= target):
            chosen.append(order[cursor])
            total += durations[order[cursor]]
            cursor += 1
        if abs(total - target) > SUBSET_TOLERANCE * target:
            cursor = start
            break
        subsets[name] = chosen
    return subsets


def labeled_splits(subsets: Dict[str, List[str]]) -> Dict[str, List[str]]:
    """The Libri-light splits that ``subsets`` (from :func:`choose_labeled_subsets`) can form."""
    folds = [subsets.get(f"1h/{k}") for k in range(NUM_FOLDS)]
    splits = {}
    if folds[0]:
        splits["train-10min"] = list(folds[0])
    if all(folds):
        splits["train-1h"] = [u for fold in folds for u in fold]
        if subsets.get("9h"):
            splits["train-10h"] = splits["train-1h"] + list(subsets["9h"])
    return splits


def missing_subsets(pool_seconds: float, subsets: Dict[str, List[str]]) -> Dict[str, str]:
    """Why each Libri-light split that ``subsets`` cannot form is missing, in words."""
    need = {"train-10min": FOLD_SECONDS, "train-1h": NUM_FOLDS * FOLD_SECONDS,
            "train-10h": NUM_FOLDS * FOLD_SECONDS + NINE_HOURS_SECONDS}
    have = labeled_splits(subsets)
    return {
        name: f"the pretraining pool holds {pool_seconds / 60:.1f} min; {name} needs {seconds / 60:.0f} min "
        "(build a larger corpus with --hours)"
        for name, seconds in need.items() if name not in have
    }


def _speakers_table(speakers: Sequence[Speaker], minutes: Dict[str, float]) -> str:
    lines = [
        "; Built-in corpus of repr-asr: synthetic speakers (base voice, speaking rate, pitch, vocal-tract factor).",
        "; ID      |SEX| SUBSET           |MINUTES| NAME",
    ]
    for s in sorted(speakers, key=lambda s: int(s.speaker_id)):
        lines.append(f"{s.speaker_id:<9}| {s.gender} | {SPLIT_DIRS[s.split]:<17}| {minutes.get(s.speaker_id, 0.0):6.2f}| {s.name}")
    return "\n".join(lines) + "\n"


def _package_versions() -> Dict[str, str]:
    from ..downstream import package_versions

    return package_versions(("repr-asr", "numpy", "torch", "torchaudio", "soundfile"))


def _request(hours: float, seed: int) -> dict:
    return {"generator_version": GENERATOR_VERSION, "hours": float(hours), "seed": int(seed)}


_MANAGED = ["train-clean-100", "dev-clean", "test-clean", FINETUNING_DIR, "SPEAKERS.TXT", "manifest.json", WORK_DIR]


def _prepare_output(root: Path, request: dict, overwrite: bool) -> None:
    """Refuse a folder built with other arguments (or holding another corpus) unless ``overwrite``."""
    request_path = root / WORK_DIR / "request.json"
    found = None
    if request_path.is_file():
        with open(request_path) as handle:
            found = json.load(handle)
    elif (root / "manifest.json").is_file():
        with open(root / "manifest.json") as handle:
            found = json.load(handle).get("request")
    existing = [name for name in _MANAGED if (root / name).exists()]
    if found == request:
        return
    if existing and not overwrite:
        if found is None:
            raise CorpusExistsError(
                f"{root} already holds {', '.join(existing)} that the built-in corpus generator did not write; "
                "choose another --output_dir, or pass --overwrite to delete them"
            )
        raise CorpusExistsError(
            f"{root} holds a built-in corpus made with {found}, not {request}; "
            "choose another --output_dir, or pass --overwrite to delete it and build anew"
        )
    for name in existing:
        path = root / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def build_corpus(
    output_dir: Union[str, os.PathLike],
    hours: float = 1.0,
    seed: int = 0,
    num_workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Synthesise the built-in corpus into ``output_dir`` (a LibriSpeech root); returns the manifest.

    Args:
        output_dir: the corpus root; created if missing.
        hours: total audio to synthesise (split as in the module docstring).
        seed: everything (speakers, sentences, effects, subsets) is drawn from it.
        num_workers: synthesis processes (the result does not depend on it).
        overwrite: delete a corpus made with other arguments instead of refusing.
        progress: show a tqdm bar.

    A second call with the same ``hours`` and ``seed`` reuses every finished work item (chunks of
    :data:`TASK_SIZE` utterances of one speaker) and only rewrites the small index files.
    """
    started = time.time()
    root = Path(output_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    request = _request(hours, seed)
    _prepare_output(root, request, overwrite)
    (root / WORK_DIR / "tasks").mkdir(parents=True, exist_ok=True)
    with open(root / WORK_DIR / "request.json", "w") as handle:
        json.dump(request, handle)

    plan = plan_corpus(hours, seed)
    speakers = {s.speaker_id: s for s in plan.speakers}
    jobs = []
    by_speaker: Dict[str, List[Utterance]] = {}
    for u in plan.utterances:
        by_speaker.setdefault(u.speaker_id, []).append(u)
    for spk, items in by_speaker.items():
        for k in range(0, len(items), TASK_SIZE):
            chunk = [asdict(u) for u in items[k : k + TASK_SIZE]]
            jobs.append((str(root), len(jobs), speakers[spk].to_dict(), chunk))
    # Festival chunks are the slow ones: start them first so no worker is left with a long tail.
    jobs.sort(key=lambda job: (job[2]["backend"] != "festival", job[1]))

    records: Dict[str, dict] = {}
    bar = tqdm(total=len(plan.utterances), desc="synthesising", unit="utt", disable=not progress)
    # One fresh process per work item: libespeak-ng carries state from one utterance to the next
    # (the same sentence comes out a few samples different after other speech), so an item must
    # start from a newly initialised library for the corpus to depend on the seed alone.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = context.Pool(max(1, num_workers), initializer=_worker_init, maxtasksperchild=1)
    results = pool.imap_unordered(_run_task, jobs)
    try:
        for chunk in results:
            for record in chunk:
                records[record["id"]] = record
            bar.update(len(chunk))
    finally:
        bar.close()
        pool.close()
        pool.join()

    # Transcripts of the LibriSpeech splits.
    for split, directory in SPLIT_DIRS.items():
        _write_transcripts(root / directory, [u for u in plan.utterances if u.split == split])
    # Libri-light's labeled subsets: hard links into the pool.
    durations = {uid: r["duration"] for uid, r in records.items()}
    pool_utts = {u.utt_id: u for u in plan.utterances if u.split == "train"}
    subsets = choose_labeled_subsets(list(pool_utts), durations, seed)
    finetuning = root / FINETUNING_DIR
    for name, ids in subsets.items():
        base = finetuning / name / "clean"
        for uid in ids:
            u = pool_utts[uid]
            _link(root / u.relative_path, base / u.speaker_id / u.chapter_id / f"{uid}.flac")
        _write_transcripts(base, [pool_utts[uid] for uid in ids])
    # Speakers.
    minutes: Dict[str, float] = {}
    for u in plan.utterances:
        minutes[u.speaker_id] = minutes.get(u.speaker_id, 0.0) + durations[u.utt_id] / 60.0
    (root / "SPEAKERS.TXT").write_text(_speakers_table(plan.speakers, minutes))
    # Phone alignments of every utterance, one file per split, plus Libri-light's 10h/1h/10min files.
    from .phones import write_alignments

    alignments = {uid: [tuple(seg) for seg in r["phones"]] for uid, r in records.items()}
    phones_dir = finetuning / "phones"
    for split, directory in SPLIT_DIRS.items():
        write_alignments(phones_dir, {u.utt_id: alignments[u.utt_id] for u in plan.utterances if u.split == split}, directory)
    for name, ids in labeled_splits(subsets).items():
        write_alignments(phones_dir, {uid: alignments[uid] for uid in ids}, name.replace("train-", ""))

    manifest = _manifest(plan, records, subsets, request, time.time() - started)
    tmp = root / "manifest.json.tmp"
    with open(tmp, "w") as handle:
        json.dump(manifest, handle, indent=1)
    os.replace(tmp, root / "manifest.json")
    return manifest


def _manifest(plan: CorpusPlan, records: Dict[str, dict], subsets: Dict[str, List[str]], request: dict, seconds: float) -> dict:
    speakers = {s.speaker_id: s for s in plan.speakers}

    def summary(ids: Sequence[str]) -> dict:
        spk = {uid.split("-")[0] for uid in ids}
        return {
            "utterances": len(ids),
            "speakers": len(spk),
            "female_speakers": sum(speakers[s].gender == "F" for s in spk),
            "hours": round(sum(records[uid]["duration"] for uid in ids) / 3600.0, 4),
        }

    splits = {SPLIT_DIRS[split]: summary([u.utt_id for u in plan.utterances if u.split == split]) for split in SPLIT_DIRS}
    labeled = {name: summary(ids) for name, ids in labeled_splits(subsets).items()}
    labeled.update({name: summary(ids) for name, ids in subsets.items()})
    pool_seconds = sum(records[u.utt_id]["duration"] for u in plan.utterances if u.split == "train")
    unmapped: Dict[str, int] = {}
    for r in records.values():
        for name in r.get("unmapped", []):
            unmapped[name] = unmapped.get(name, 0) + 1
    effects = [u.effects for u in plan.utterances]
    return {
        "request": request,
        "versions": {
            "generator": GENERATOR_VERSION,
            "festival": festival_version(),
            "espeak-ng": espeak_version(),
            **_package_versions(),
        },
        "seed": plan.seed,
        "hours_requested": plan.hours,
        "hours": round(sum(r["duration"] for r in records.values()) / 3600.0, 4),
        "sampling_rate": SAMPLING_RATE,
        "splits": splits,
        "labeled_subsets": labeled,
        "missing_labeled_subsets": missing_subsets(pool_seconds, subsets),
        "speakers": {
            "total": len(plan.speakers),
            "female": sum(s.gender == "F" for s in plan.speakers),
            "festival": sum(s.backend == "festival" for s in plan.speakers),
            "espeak": sum(s.backend == "espeak" for s in plan.speakers),
            "base_voices": len({s.voice for s in plan.speakers}),
        },
        "vocabulary_size": plan.vocabulary_size,
        "acoustics": {
            "noisy_fraction": round(sum(e.noise is not None for e in effects) / len(effects), 3),
            "reverberant_fraction": round(sum(e.rt60 is not None for e in effects) / len(effects), 3),
        },
        "unmapped_phones": unmapped,
        "build_seconds": round(seconds, 1),
    }
