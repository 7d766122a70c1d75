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


class AudioError(ValueError):
    """An audio file (or array) that cannot be used; the message names the file."""


def _resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    if orig_sr == target_sr:
        return waveform
    tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    return torchaudio.functional.resample(tensor, orig_sr, target_sr).numpy()


def _read(source: Union[str, os.PathLike, bytes], name: str) -> tuple[np.ndarray, int]:
    """Decode with libsndfile (wav, flac, ogg, mp3 with libsndfile >= 1.1); fall back to torchaudio."""
    try:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        data, sr = soundfile.read(handle, dtype="float32", always_2d=True)  # (samples, channels)
        return data, sr
    except Exception as sf_error:  # noqa: BLE001 - any decoder failure is reported below
        if isinstance(source, (bytes, bytearray)):
            raise AudioError(f"{name}: cannot decode audio ({sf_error})") from sf_error
        try:
            tensor, sr = torchaudio.load(str(source))  # (channels, samples)
            return tensor.numpy().T.astype(np.float32), sr
        except Exception as ta_error:  # noqa: BLE001
            raise AudioError(f"{name}: cannot decode audio ({sf_error}; {ta_error})") from ta_error


def validate_waveform(waveform: np.ndarray, name: str = "<array>") -> np.ndarray:
    """Check a mono float waveform: non-empty and finite. Returns it as float32."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise AudioError(f"{name}: expected mono audio of shape (samples,), got shape {waveform.shape}")
    if waveform.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    if not np.isfinite(waveform).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    return waveform


def load_audio(
    path: Union[str, os.PathLike, bytes], sampling_rate: int = DEFAULT_SAMPLING_RATE, name: Optional[str] = None
) -> np.ndarray:
    """Load an audio file as float32 mono at ``sampling_rate``.

    Multi-channel audio is averaged to mono and other rates are resampled with torchaudio. A file
    that is missing, unreadable, empty or holds NaN/inf raises :class:`AudioError` (a ``ValueError``)
    whose message names the file.
    """
    name = name or (str(path) if not isinstance(path, (bytes, bytearray)) else "<bytes>")
    if not isinstance(path, (bytes, bytearray)) and not os.path.isfile(path):
        raise AudioError(f"{name}: no such audio file")
    data, sr = _read(path, name)
    if data.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = validate_waveform(mono, name)
    return np.ascontiguousarray(_resample(mono, sr, sampling_rate), dtype=np.float32)


def decode_audio(value, sampling_rate: int = DEFAULT_SAMPLING_RATE, name: Optional[str] = None) -> np.ndarray:
    """Decode one ``audio`` cell of a corpus: a file path, a ``{"path", "bytes"}`` dict (``datasets``'
    ``Audio(decode=False)``), or a decoded ``{"array", "sampling_rate"}`` dict. Returns float32 mono.
    """
    if isinstance(value, (str, os.PathLike)):
        return load_audio(value, sampling_rate, name=name)
    if isinstance(value, dict):
        label = name or value.get("path") or "<audio>"
        if value.get("array") is not None:
            array = np.asarray(value["array"], dtype=np.float32)
            if array.ndim == 2:  # (channels, samples) as datasets stores multi-channel audio
                array = array.mean(axis=0)
            array = validate_waveform(array, label)
            return np.ascontiguousarray(_resample(array, int(value["sampling_rate"]), sampling_rate), dtype=np.float32)
        if value.get("bytes"):
            return load_audio(value["bytes"], sampling_rate, name=label)
        if value.get("path"):
            return load_audio(value["path"], sampling_rate, name=label)
    raise AudioError(f"{name or '<audio>'}: cannot decode audio cell of type {type(value).__name__}")


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
        if kind not in ("fbank", "mfcc", "waveform"):
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
