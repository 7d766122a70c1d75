"""Acoustic variation for the built-in corpus: vocal-tract length, noise, reverberation, level.

Everything works on float32 numpy waveforms and keeps phone segments (``(phone, start_s, end_s)``)
in step with the audio, so timings still tile the final utterance exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchaudio

Segment = Tuple[str, float, float]

NOISE_TYPES = ("white", "pink", "brown", "hum", "babble")


@dataclass
class Effects:
    """Per-utterance acoustic settings, drawn at planning time so the result is independent of workers.

    ``lead_s`` / ``tail_s``: silence added before / after the speech (seconds); ``noise``: one of
    :data:`NOISE_TYPES` or ``None``; ``snr_db``: speech-to-noise ratio of the added noise; ``rt60``:
    reverberation time of a synthetic room impulse response in seconds, or ``None``; ``peak``: final
    peak level (0..1); ``seed``: seeds the noise and the impulse response.
    """

    lead_s: float
    tail_s: float
    noise: Optional[str]
    snr_db: float
    rt60: Optional[float]
    peak: float
    seed: int


def apply_vtl(audio: np.ndarray, sampling_rate: int, vtl: float, target_rate: int = 16000) -> Tuple[np.ndarray, float]:
    """Scale formants (and F0 and tempo) by ``vtl`` and resample to ``target_rate``.

    The waveform is read as if it had been recorded at ``sampling_rate * vtl`` (played faster when
    ``vtl > 1``: a shorter vocal tract) and resampled to ``target_rate`` with torchaudio's sinc
    resampler. That rate is rounded to 50 Hz so the rational resampling ratio stays small. Returns
    the waveform and the time scale actually applied (new time = old time * scale).
    """
    source_rate = int(round(sampling_rate * vtl / 50.0)) * 50
    divisor = gcd(source_rate, target_rate)
    tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    out = torchaudio.functional.resample(tensor, source_rate // divisor, target_rate // divisor)
    return out.numpy(), sampling_rate / source_rate


def _coloured_noise(rng: np.random.Generator, n: int, kind: str, sampling_rate: int) -> np.ndarray:
    if kind == "hum":  # mains hum with harmonics plus a little hiss
        t = np.arange(n) / sampling_rate
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        hum = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 8))
        return hum + 0.05 * rng.standard_normal(n)
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / sampling_rate)
    freqs[0] = freqs[1] if n > 1 else 1.0
    if kind == "pink":
        spectrum /= np.sqrt(freqs)
    elif kind == "brown":
        spectrum /= freqs
    elif kind == "babble":  # speech-shaped noise with a slow syllabic amplitude modulation
        spectrum *= np.exp(-0.5 * (np.log(freqs / 500.0) / 0.8) ** 2)
    else:
        raise ValueError(f"unknown noise type {kind!r}; expected one of {NOISE_TYPES}")
    noise = np.fft.irfft(spectrum, n)
    if kind == "babble":
        t = np.arange(n) / sampling_rate
        noise *= 1.0 + 0.6 * np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t + rng.uniform(0, 2 * np.pi))
    return noise


def _impulse_response(rng: np.random.Generator, rt60: float, sampling_rate: int) -> np.ndarray:
    """Exponentially decaying noise (60 dB down at ``rt60``) after a unit direct path."""
    n = max(2, int(rt60 * sampling_rate))
    t = np.arange(n) / sampling_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078: -60 dB at rt60
    delay = int(rng.uniform(0.002, 0.01) * sampling_rate)  # first reflections arrive a few ms late
    rir = np.zeros(n + delay)
    rir[0] = 1.0
    rir[delay:] += tail * rng.uniform(0.1, 0.3)
    return rir


def apply_effects(audio: np.ndarray, segments: Sequence[Segment], effects: Effects, sampling_rate: int = 16000) -> Tuple[np.ndarray, List[Segment]]:
    """Pad with silence, reverberate, add noise at ``snr_db`` and set the peak level.

    Reverberation keeps the length (its tail past the end is cut); padding extends the first and
    last silence segments (or adds them), so the segments still tile the returned waveform.
    """
    rng = np.random.default_rng(effects.seed)
    lead, tail = int(effects.lead_s * sampling_rate), int(effects.tail_s * sampling_rate)
    x = np.concatenate([np.zeros(lead), audio.astype(np.float64), np.zeros(tail)])
    speech_power = float(np.mean(audio.astype(np.float64) ** 2)) + 1e-12
    if effects.rt60 is not None:
        rir = torch.from_numpy(_impulse_response(rng, effects.rt60, sampling_rate))
        x = torchaudio.functional.fftconvolve(torch.from_numpy(x), rir)[: len(x)].numpy()
        x *= np.sqrt(speech_power / (np.mean(x[lead : len(x) - tail] ** 2) + 1e-12))
    if effects.noise is not None:
        noise = _coloured_noise(rng, len(x), effects.noise, sampling_rate)
        noise *= np.sqrt(speech_power / (np.mean(noise**2) + 1e-12) / 10.0 ** (effects.snr_db / 10.0))
        x = x + noise
    x *= effects.peak / (np.max(np.abs(x)) + 1e-9)
    shift = lead / sampling_rate
    total = len(x) / sampling_rate
    out = [[p, s + shift, e + shift] for p, s, e in segments]
    if lead:
        if out[0][0] == "SIL":
            out[0][1] = 0.0
        else:
            out.insert(0, ["SIL", 0.0, shift])
    if tail:
        if out[-1][0] == "SIL":
            out[-1][2] = total
        else:
            out.append(["SIL", out[-1][2], total])
    out[-1][2] = total
    return x.astype(np.float32), [(p, float(s), float(e)) for p, s, e in out]


def scale_segments(segments: Sequence[Segment], scale: float, duration: float) -> List[Segment]:
    """Multiply segment times by ``scale`` (a tempo change), pinning the last end to ``duration``."""
    out = [(p, s * scale, min(e * scale, duration)) for p, s, e in segments]
    out = [(p, s, e) for p, s, e in out if e > s]
    out[-1] = (out[-1][0], out[-1][1], duration)
    return out


def quantize_segments(segments: Sequence[Segment], num_samples: int, sampling_rate: int = 16000) -> List[Segment]:
    """Snap boundaries to sample positions: start 0, contiguous, end ``num_samples / sampling_rate``;
    segments that become empty are dropped (their time goes to the neighbours)."""
    bounds = [int(round(e * sampling_rate)) for _, _, e in segments[:-1]]
    out, start = [], 0
    for (phone, _, _), end in zip(segments, bounds + [num_samples]):
        end = min(max(end, start), num_samples)
        if end > start:
            if out and out[-1][0] == phone == "SIL":
                out[-1][2] = end
            else:
                out.append([phone, start, end])
            start = end
    if not out:
        out = [["SIL", 0, num_samples]]
    out[-1][2] = num_samples
    return [(p, s / sampling_rate, e / sampling_rate) for p, s, e in out]
