"""Audio I/O, validation, mu-law companding and the spectral front-ends.

Everything here works on 16 kHz mono float32 by default. Shapes follow one notation across the
project: waveforms are ``(batch, samples)``, features are ``(batch, frames, dim)``.
"""

from __future__ import annotations

import io
import os
from typing import Optional, Union

import numpy as np
import soundfile
import torch
import torchaudio
from torch import nn

DEFAULT_SAMPLING_RATE = 16000
# 25 ms windows with a 10 ms hop: the front-end convention of the paper and of Kaldi.
WINDOW_MS = 25
HOP_MS = 10
# The spectral front-ends: also the no-pretraining baselines an `--upstream` can name.
SPECTRAL_FEATURES = ("fbank", "mfcc")


class AudioError(ValueError):
    """An audio file (or array) that cannot be used; the message names the file."""


# A 2-D array is multi-channel audio when exactly one axis has at most this many entries: that axis is
# the channels (soundfile gives ``(samples, channels)``, datasets and torchaudio ``(channels, samples)``).
MAX_CHANNELS = 8
# Float audio is on the [-1, 1] scale. Resampling, mixing or float effects can push a legitimate
# signal a little past 1, so only a peak beyond MAX_PEAK is refused: such a file is integer PCM
# stored as float, or an unnormalised signal, and would silently reach the models 15x too loud.
MAX_PEAK = 2.0
# Integer PCM → float in [-1, 1): (offset, scale) per dtype, as soundfile reads PCM files.
_PCM_SCALES = {
    np.dtype(np.int8): (0, 2**7),
    np.dtype(np.int16): (0, 2**15),
    np.dtype(np.int32): (0, 2**31),
    np.dtype(np.uint8): (128, 2**7),  # 8-bit WAV is unsigned, centred on 128
}


def _resample(waveform: np.ndarray, orig_sr: int, target_sr: Optional[int]) -> np.ndarray:
    if target_sr is None or orig_sr == target_sr:
        return waveform
    tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    return torchaudio.functional.resample(tensor, orig_sr, target_sr).numpy()


def _read(source: Union[str, os.PathLike, bytes], name: str) -> tuple[np.ndarray, int]:
    """Decode with libsndfile (wav, flac, ogg, mp3 with libsndfile >= 1.1).

    No second decoder: ``torchaudio.load`` needs torchcodec since torchaudio 2.9, which this project does
    not install. Any decoder failure (a truncated FLAC loses sync, a garbage header...) becomes an
    :class:`AudioError` naming the file, so a caller can skip or report it instead of crashing deep in a
    training step.
    """
    try:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        return soundfile.read(handle, dtype="float32", always_2d=True)  # (samples, channels), rate
    except Exception as error:  # noqa: BLE001 - any decoder failure is reported the same way
        raise AudioError(f"{name}: cannot decode audio ({error})") from error


def pcm_to_float(array: np.ndarray, name: str = "<array>") -> np.ndarray:
    """Samples as float32 on the [-1, 1] scale: float arrays as they are, integer PCM scaled as
    soundfile scales PCM files (int16 / 32768, int32 / 2**31, int8 / 128, uint8 (x - 128) / 128).

    Other integer types (int64, uint16...) have no PCM convention (an int64 array is usually a Python
    list of ints) and raise :class:`AudioError`, as do non-numeric arrays.
    """
    array = np.asarray(array)
    if array.dtype in _PCM_SCALES:
        offset, scale = _PCM_SCALES[array.dtype]
        return ((array.astype(np.float32) - offset) / scale).astype(np.float32)
    if array.dtype.kind in "iu":
        raise AudioError(
            f"{name}: integer samples of dtype {array.dtype} have no PCM scale; pass float samples in [-1, 1] "
            "or int16 / int32 / int8 / uint8 PCM"
        )
    if array.dtype.kind != "f":
        raise AudioError(f"{name}: audio samples must be numbers, got an array of dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def to_mono(array: np.ndarray, name: str = "<array>") -> np.ndarray:
    """A 1-D array as it is; a 2-D array averaged over its channel axis, the one axis with at most
    :data:`MAX_CHANNELS` entries, so ``(samples, channels)`` (soundfile) and ``(channels, samples)``
    (datasets, torchaudio) both work. A shape where that axis is not clear (both axes or neither at
    most 8 long, e.g. ``(4, 4)``) raises :class:`AudioError`, as does any other number of dimensions."""
    array = np.asarray(array)
    if array.ndim == 1:
        return array
    if array.ndim == 2:
        rows, cols = array.shape
        if array.size == 0:
            raise AudioError(f"{name}: audio is empty (shape {array.shape})")
        if cols <= MAX_CHANNELS < rows:
            return array.mean(axis=1)  # (samples, channels)
        if rows <= MAX_CHANNELS < cols:
            return array.mean(axis=0)  # (channels, samples)
        raise AudioError(
            f"{name}: cannot tell channels from samples in audio of shape {array.shape}; pass mono audio "
            f"(samples,), or (samples, channels) / (channels, samples) with at most {MAX_CHANNELS} channels"
        )
    raise AudioError(f"{name}: expected mono audio (samples,) or multi-channel audio (2-D), got shape {array.shape}")


def validate_waveform(waveform: np.ndarray, name: str = "<array>", max_peak: Optional[float] = None) -> np.ndarray:
    """Check a mono float waveform: 1-D, non-empty, finite and, with ``max_peak``, no sample beyond
    ``±max_peak``. Returns it as float32; raises :class:`AudioError` naming ``name``."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise AudioError(f"{name}: expected mono audio of shape (samples,), got shape {waveform.shape}")
    if waveform.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    if not np.isfinite(waveform).all():
        bad = int((~np.isfinite(waveform)).sum())
        raise AudioError(f"{name}: audio contains NaN or infinite samples ({bad} of {waveform.size})")
    if max_peak is not None:
        peak = float(np.abs(waveform).max())
        if peak > max_peak:
            raise AudioError(
                f"{name}: float audio is not on the [-1, 1] scale (peak {peak:.4g} > {max_peak}); "
                "rescale it (integer PCM stored as float: divide by 32768)"
            )
    return waveform


def array_to_waveform(array, name: str = "<array>", max_peak: Optional[float] = MAX_PEAK) -> np.ndarray:
    """Any audio array → float32 mono: integer PCM scaled (:func:`pcm_to_float`), channels averaged
    (:func:`to_mono`), then checked by :func:`validate_waveform` (peak limit ``max_peak``)."""
    return validate_waveform(to_mono(pcm_to_float(array, name), name), name, max_peak)


def load_audio(
    path: Union[str, os.PathLike, bytes],
    sampling_rate: Optional[int] = DEFAULT_SAMPLING_RATE,
    name: Optional[str] = None,
) -> np.ndarray:
    """Load an audio file as float32 mono at ``sampling_rate`` (``None``: the file's own rate).

    Multi-channel audio is averaged to mono and other rates are resampled with torchaudio. A file that
    is missing, undecodable (e.g. truncated), empty, holds NaN/inf, or is float audio peaking beyond
    :data:`MAX_PEAK` (not on the [-1, 1] scale) raises :class:`AudioError` (a ``ValueError``) whose
    message names the file (``name`` when given).
    """
    name = name or (str(path) if not isinstance(path, (bytes, bytearray)) else "<bytes>")
    if not isinstance(path, (bytes, bytearray)) and not os.path.isfile(path):
        raise AudioError(f"{name}: no such audio file")
    data, sr = _read(path, name)  # (samples, channels): the layout is known, so no guessing with to_mono
    if data.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = validate_waveform(mono, name, max_peak=MAX_PEAK)
    return np.ascontiguousarray(_resample(mono, sr, sampling_rate), dtype=np.float32)


def decode_audio(value, sampling_rate: Optional[int] = DEFAULT_SAMPLING_RATE, name: Optional[str] = None) -> np.ndarray:
    """Decode one ``audio`` cell of a corpus: a file path, a ``{"path", "bytes"}`` dict (``datasets``'
    ``Audio(decode=False)``), or a decoded ``{"array", "sampling_rate"}`` dict. Returns float32 mono at
    ``sampling_rate`` (``None``: the audio's own rate).

    Arrays go through :func:`array_to_waveform`: integer PCM is scaled to [-1, 1), ``(samples, channels)``
    and ``(channels, samples)`` are averaged to mono. Errors are :class:`AudioError` naming ``name`` and
    the cell's file, e.g. ``utterance 11-100-0001 (/data/11-100-0001.flac): cannot decode audio (...)``.
    """
    path = value if isinstance(value, (str, os.PathLike)) else value.get("path") if isinstance(value, dict) else None
    label = name or (str(path) if path else "<audio>")
    if name and path and str(path) not in name:  # callers name the utterance; errors should name the file too
        label = f"{name} ({path})"
    if isinstance(value, (str, os.PathLike)):
        return load_audio(value, sampling_rate, name=label)
    if isinstance(value, dict):
        if value.get("array") is not None:
            if value.get("sampling_rate") is None:
                raise AudioError(f"{label}: audio cell has an array but no sampling_rate")
            array = array_to_waveform(value["array"], label)
            return np.ascontiguousarray(_resample(array, int(value["sampling_rate"]), sampling_rate), dtype=np.float32)
        if value.get("bytes"):
            return load_audio(value["bytes"], sampling_rate, name=label)
        if value.get("path"):
            return load_audio(value["path"], sampling_rate, name=label)
        raise AudioError(f"{label}: audio cell holds no array, bytes or path (keys: {sorted(value)})")
    raise AudioError(f"{label}: cannot decode audio cell of type {type(value).__name__}")


def save_audio(path: Union[str, os.PathLike], waveform: np.ndarray, sampling_rate: int = DEFAULT_SAMPLING_RATE) -> None:
    """Write float audio to ``path`` (format from the extension: .flac, .wav, .ogg), 16-bit where it applies."""
    waveform = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
    ext = os.path.splitext(str(path))[1].lower()
    subtype = "PCM_16" if ext in (".wav", ".flac") else None
    soundfile.write(str(path), waveform, sampling_rate, subtype=subtype)


# ----------------------------------------------------------------------------------------------
# mu-law: the WaveNet decoder predicts 256-way categorical mu-law samples.


def mu_law_encode(waveform: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """Float waveform in [-1, 1] → integer classes in [0, quantization_channels)."""
    return torchaudio.functional.mu_law_encoding(waveform.clamp(-1.0, 1.0), quantization_channels)


def mu_law_decode(classes: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """Integer mu-law classes → float waveform in [-1, 1]."""
    return torchaudio.functional.mu_law_decoding(classes, quantization_channels)


# ----------------------------------------------------------------------------------------------
# Spectral front-ends, computed inside the models from raw waveform.


def num_frames(sample_lengths: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Frames a centred STFT with ``hop_length`` gives for each sample length: ``1 + len // hop``."""
    return torch.div(sample_lengths, hop_length, rounding_mode="floor") + 1


def _hold_last_frame(x: torch.Tensor, frame_lengths: Optional[torch.Tensor]) -> torch.Tensor:
    """Repeat each utterance's last real frame over its padding; ``x`` is ``(batch, dim, frames)``."""
    if frame_lengths is None:
        return x
    last = (frame_lengths.clamp(min=1) - 1).to(x.device)
    index = torch.minimum(torch.arange(x.shape[-1], device=x.device)[None, :], last[:, None])  # (B, T)
    return x.gather(2, index[:, None, :].expand_as(x))


class SpectralFrontEnd(nn.Module):
    """Waveform ``(batch, samples)`` → features ``(batch, frames, dim)`` at 100 Hz.

    ``kind`` is ``"fbank"`` (``n_mels`` log-mel energies), ``"mfcc"`` (``n_mfcc`` cepstra with Δ and ΔΔ,
    so ``3 * n_mfcc`` dims) or ``"waveform"`` (the raw samples framed into 10 ms hops of ``hop`` dims).
    Windows are 25 ms with a 10 ms hop, centred with zero padding, so frame ``t`` covers samples around
    ``t * hop`` and the real frames of a padded batch equal those of each utterance alone.

    The module holds no parameters or buffers: the window, mel and DCT matrices are built on first use
    on the input's device (torchaudio.functional), so checkpoints stay free of constants and the
    module can be created on the meta device that ``from_pretrained`` uses.
    """

    def __init__(self, kind: str = "mfcc", sampling_rate: int = DEFAULT_SAMPLING_RATE, n_mels: int = 80, n_mfcc: int = 13):
        super().__init__()
        if kind not in (*SPECTRAL_FEATURES, "waveform"):
            raise ValueError(f"input_features must be 'fbank', 'mfcc' or 'waveform', got {kind!r}")
        self.kind = kind
        self.sampling_rate = sampling_rate
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.hop_length = sampling_rate * HOP_MS // 1000
        self.win_length = sampling_rate * WINDOW_MS // 1000
        self.n_fft = 1 << (self.win_length - 1).bit_length()
        self.dim = {"fbank": n_mels, "mfcc": 3 * n_mfcc, "waveform": self.hop_length}[kind]
        self._constants: dict = {}

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        return num_frames(sample_lengths, self.hop_length)

    def padded_batch(self, waveform: torch.Tensor, sample_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, frame_lengths)`` of a zero-padded batch ``(batch, samples)`` with ``(batch,)`` real sample
        counts: the padding is zeroed first and the windows are zero-padded at the edges, so each utterance's
        real frames are the ones it gets alone."""
        frame_lengths = self.frame_lengths(sample_lengths)
        real = torch.arange(waveform.shape[-1], device=waveform.device)[None, :] < sample_lengths[:, None]
        features = self(waveform * real, frame_lengths)
        return features, frame_lengths.clamp(max=features.shape[1])

    def _matrices(self, device: torch.device):
        if device not in self._constants:
            window = torch.hann_window(self.win_length, device=device)
            mel = torchaudio.functional.melscale_fbanks(
                self.n_fft // 2 + 1, 0.0, self.sampling_rate / 2, self.n_mels, self.sampling_rate
            ).to(device)  # (freqs, n_mels)
            dct = torchaudio.functional.create_dct(self.n_mfcc, self.n_mels, norm="ortho").to(device)  # (n_mels, n_mfcc)
            self._constants[device] = (window, mel, dct)
        return self._constants[device]

    def forward(self, waveform: torch.Tensor, frame_lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``frame_lengths`` ``(batch,)``, when given, keeps Δ/ΔΔ of the last real frames free of padding."""
        # Spectral features in float32 even under autocast: log of small energies is fragile in bf16.
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            waveform = waveform.float()
            frames = int(self.frame_lengths(torch.tensor(waveform.shape[-1])))
            if self.kind == "waveform":
                padded = nn.functional.pad(waveform, (0, frames * self.hop_length - waveform.shape[-1]))
                return padded.view(waveform.shape[0], frames, self.hop_length)  # (B, T, hop)
            window, mel, dct = self._matrices(waveform.device)
            spec = torch.stft(
                waveform, self.n_fft, self.hop_length, self.win_length, window,
                # Zero (not reflect) padding at the edges: an utterance alone then gives exactly the
                # features it gets inside a zero-padded batch.
                center=True, pad_mode="constant",
                return_complex=True,
            ).abs().pow(2)  # (B, freqs, T)
            log_mel = torch.log(spec.transpose(1, 2) @ mel + 1e-6)  # (B, T, n_mels)
            if self.kind == "fbank":
                return log_mel
            cep = (log_mel @ dct).transpose(1, 2)  # (B, n_mfcc, T)
            # Deltas pad by repeating the edge frame; holding each utterance's last real frame over
            # its padding gives it the deltas it would get alone.
            cep = _hold_last_frame(cep, frame_lengths)
            d1 = _hold_last_frame(torchaudio.functional.compute_deltas(cep, win_length=5), frame_lengths)
            d2 = torchaudio.functional.compute_deltas(d1, win_length=5)
            return torch.cat([cep, d1, d2], dim=1).transpose(1, 2)  # (B, T, 3*n_mfcc)
