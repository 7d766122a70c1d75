"""Speakers and the two synthesis back-ends: Festival (subprocess) and espeak-ng (libespeak-ng via ctypes).

A :class:`Speaker` is a base voice plus a rate, a pitch setting and a vocal-tract-length factor
(applied later by resampling, :func:`repr_asr.data.synthesis.effects.apply_vtl`). Both back-ends
return :class:`Synthesis`: the waveform at the synthesiser's rate and ARPAbet phone segments that
tile it from 0 to its duration.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile

from .phonesets import RHOTIC_ACCENTS, SILENCE, Mapping, map_espeak, map_festival

Segment = Tuple[str, float, float]  # (phone, start_s, end_s)

# Festival's three English voices in Debian main: scheme function, gender, how pitch is set.
FESTIVAL_VOICES: Dict[str, Tuple[str, str]] = {
    "kal": ("voice_kal_diphone", "M"),
    "ked": ("voice_ked_diphone", "M"),
    "slt": ("voice_cmu_us_slt_arctic_hts", "F"),
}
# espeak-ng English accents ("en" is British English: its voice file is gmw/en) and voice variants
# (``accent+variant``); the genders are those written in the variant files.
ESPEAK_ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS = {
    "F": ["f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda", "linda", "steph", "steph2", "steph3"],
    "M": ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Denis", "Diogo", "Henrique", "Hugo", "Lee", "Marco",
          "antonio", "michel", "miguel", "sandro", "travis", "victor"],
}


class SynthesisError(RuntimeError):
    """A synthesiser failed; the message names the voice and the utterance."""


@dataclass(frozen=True)
class Speaker:
    """One corpus speaker.

    Fields: ``speaker_id`` (numeric string), ``gender`` (``"M"``/``"F"``), ``backend``
    (``"festival"``/``"espeak"``), ``voice`` (a key of :data:`FESTIVAL_VOICES` or ``accent+variant``),
    ``rate`` (speaking-rate factor, > 1 is faster, applied by the synthesiser), ``pitch`` (Festival
    diphone voices: target mean F0 in Hz; slt: shift in half-tones; espeak: its pitch 0..99),
    ``pitch_range`` (F0 spread: Hz std for diphones, espeak range 0..99, unused for slt), ``vtl``
    (formant scale factor applied by resampling; > 1 is a shorter vocal tract; it also scales
    F0 and tempo by the same factor), ``split`` (``train``/``dev``/``test``).
    """

    speaker_id: str
    gender: str
    backend: str
    voice: str
    rate: float
    pitch: float
    pitch_range: float
    vtl: float
    split: str

    @property
    def name(self) -> str:
        return f"{self.backend}:{self.voice} rate={self.rate:.2f} pitch={self.pitch:.1f} vtl={self.vtl:.3f}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Synthesis:
    audio: np.ndarray  # (samples,) float32
    sampling_rate: int
    segments: List[Segment]
    unmapped: List[str] = field(default_factory=list)  # source phones with no ARPAbet mapping (merged into the previous phone)


def _expand(items: Sequence[Tuple[Mapping, float, float]], duration: float) -> List[Segment]:
    """Mapped source segments → ARPAbet segments tiling [0, duration]: splits multi-phone mappings
    evenly, gives unmapped items to their predecessor, merges adjacent silences, drops empty ones."""
    out: List[List] = []
    for mapping, start, end in items:
        start, end = max(0.0, min(start, duration)), max(0.0, min(end, duration))
        if end <= start:
            continue
        if mapping is None:
            if out:
                out[-1][2] = end
            continue
        step = (end - start) / len(mapping)
        for k, phone in enumerate(mapping):
            out.append([phone, start + k * step, start + (k + 1) * step])
    merged: List[List] = []
    for seg in out:
        if merged and seg[0] == SILENCE and merged[-1][0] == SILENCE:
            merged[-1][2] = seg[2]
        else:
            merged.append(seg)
    if not merged:
        return [(SILENCE, 0.0, duration)]
    # Close gaps and cover the edges with silence so the segments tile the audio exactly.
    tiled: List[List] = []
    cursor = 0.0
    for phone, start, end in merged:
        if start > cursor:
            if tiled and tiled[-1][0] == SILENCE:
                tiled[-1][2] = start
            elif phone == SILENCE:
                start = cursor
            else:
                tiled.append([SILENCE, cursor, start])
        tiled.append([phone, max(start, cursor), end])
        cursor = end
    if cursor < duration:
        if tiled[-1][0] == SILENCE:
            tiled[-1][2] = duration
        else:
            tiled.append([SILENCE, cursor, duration])
    tiled[0][1] = 0.0
    tiled[-1][2] = duration
    return [(p, float(s), float(e)) for p, s, e in tiled]


# --------------------------------------------------------------------------------------- Festival
def festival_synthesize(speaker: Speaker, prompts: Sequence[str], festival: str = "festival") -> List[Synthesis]:
    """Synthesise ``prompts`` with one Festival process (the voice loads once per call)."""
    function, _ = FESTIVAL_VOICES[speaker.voice]
    lines = [f"({function})"]
    if speaker.voice == "slt":  # HTS voice: hts_engine's speed (-r) and half-tone shift (-fm)
        lines.append(f"(set! hts_engine_params (append hts_engine_params (list '(\"-r\" {speaker.rate:.4f}) '(\"-fm\" {speaker.pitch:.3f}))))")
    else:  # diphone voices: duration stretch and the target F0 of the linear-regression intonation model
        lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / speaker.rate:.4f})")
        lines.append(
            f"(set! int_lr_params '((target_f0_mean {speaker.pitch:.2f}) (target_f0_std {speaker.pitch_range:.2f})"
            " (model_f0_mean 170) (model_f0_std 34)))"
        )
    with tempfile.TemporaryDirectory(prefix="festival_") as tmp:
        for i, prompt in enumerate(prompts):
            if '"' in prompt or "\\" in prompt:
                raise SynthesisError(f"{speaker.name}: prompt {prompt!r} contains a quote or backslash")
            base = os.path.join(tmp, str(i))
            lines.append(
                f'(set! utt (utt.synth (Utterance Text "{prompt}")))'
                f' (utt.save.wave utt "{base}.wav" \'riff) (utt.save.segs utt "{base}.segs")'
            )
        script = os.path.join(tmp, "synth.scm")
        with open(script, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        proc = subprocess.run([festival, "-b", script], capture_output=True, text=True)
        results = []
        for i, prompt in enumerate(prompts):
            base = os.path.join(tmp, str(i))
            if not os.path.exists(base + ".wav"):
                raise SynthesisError(
                    f"festival ({speaker.name}) produced no audio for {prompt!r} (exit {proc.returncode}): {proc.stderr[-500:]}"
                )
            audio, sr = soundfile.read(base + ".wav", dtype="float32")
            duration = len(audio) / sr
            items, start = [], 0.0
            with open(base + ".segs") as handle:
                for line in handle:
                    parts = line.split()
                    if len(parts) != 3 or parts[0] == "#":
                        continue
                    end = float(parts[0])
                    items.append((map_festival(parts[2]), start, end))
                    start = end
            results.append(Synthesis(audio, sr, _expand(items, duration)))
    return results


# --------------------------------------------------------------------------------------- espeak-ng
class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT in speak_lib.h
    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
        ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_DEFAULT_WPM = 175  # espeak-ng's default speaking rate


class EspeakSynthesizer:
    """libespeak-ng in this process (one per process: the library keeps global state).

    Phone timings come from the library's phoneme events: each marks where a phoneme starts (in
    samples); a phoneme ends where the next one starts.
    """

    _instance: Optional["EspeakSynthesizer"] = None

    def __init__(self) -> None:
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as error:
            raise SynthesisError(f"cannot load libespeak-ng ({path}): install the Debian package libespeak-ng1") from error
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.sampling_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        )
        if self.sampling_rate <= 0:
            raise SynthesisError("espeak_Initialize failed (is espeak-ng-data installed?)")
        self._chunks: List[np.ndarray] = []
        self._phonemes: List[Tuple[str, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "EspeakSynthesizer":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _on_audio(self, wav, num_samples, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                name = bytes(events[i].id.string).split(b"\0")[0].decode("ascii", "replace")
                self._phonemes.append((name, int(events[i].sample)))
            i += 1
        return 0

    def synthesize(self, speaker: Speaker, prompt: str) -> Synthesis:
        if self.lib.espeak_SetVoiceByName(speaker.voice.encode()) != 0:
            raise SynthesisError(f"espeak-ng has no voice {speaker.voice!r} ({speaker.name})")
        self.lib.espeak_SetParameter(_PARAM_RATE, int(round(_DEFAULT_WPM * speaker.rate)), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(round(speaker.pitch)), 0)
        self.lib.espeak_SetParameter(_PARAM_RANGE, int(round(speaker.pitch_range)), 0)
        self._chunks, self._phonemes = [], []
        text = prompt.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(text, len(text), 0, 0, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise SynthesisError(f"espeak-ng ({speaker.name}) failed on {prompt!r} (status {status})")
        audio = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        sr = self.sampling_rate
        duration = len(audio) / sr
        items, unmapped = [], []
        rhotic = speaker.voice.split("+")[0] in RHOTIC_ACCENTS
        for k, (name, sample) in enumerate(self._phonemes):
            end = self._phonemes[k + 1][1] if k + 1 < len(self._phonemes) else len(audio)
            try:
                mapping = map_espeak(name, rhotic)
            except KeyError:  # a rare mnemonic: keep going, report it in the manifest
                mapping = None
                unmapped.append(name)
            items.append((mapping, sample / sr, end / sr))
        return Synthesis(audio, sr, _expand(items, duration), unmapped)


def synthesize(speaker: Speaker, prompts: Sequence[str]) -> List[Synthesis]:
    """Synthesise ``prompts`` with ``speaker``'s base voice, rate and pitch (no VTL, no effects)."""
    if speaker.backend == "festival":
        return festival_synthesize(speaker, prompts)
    if speaker.backend == "espeak":
        engine = EspeakSynthesizer.get()
        return [engine.synthesize(speaker, prompt) for prompt in prompts]
    raise SynthesisError(f"speaker {speaker.speaker_id}: unknown backend {speaker.backend!r}")


def festival_version(festival: str = "festival") -> str:
    try:
        out = subprocess.run([festival, "--version"], capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError) as error:
        return f"unavailable ({error})"


def espeak_version() -> str:
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
        lib.espeak_Info.restype = ctypes.c_char_p
        return lib.espeak_Info(None).decode()
    except (OSError, AttributeError) as error:
        return f"unavailable ({error})"
