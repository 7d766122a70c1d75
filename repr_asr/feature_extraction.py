"""The feature extractor every upstream shares: raw 16 kHz waveform in, padded ``input_values`` out.

The models compute MFCC / filterbanks themselves (README, "Layout and design notes"), so the extractor
only validates, optionally normalises each utterance over its real samples, pads and builds the
attention mask.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import TensorType

from .audio import DEFAULT_SAMPLING_RATE, MAX_CHANNELS, AudioError, array_to_waveform


class ReprFeatureExtractor(SequenceFeatureExtractor):
    r"""Pads raw waveforms into ``input_values`` ``(batch, samples)`` with an ``attention_mask``.

    Args:
        feature_size (`int`, defaults to 1): one value per sample.
        sampling_rate (`int`, defaults to 16000): the only rate accepted; resample beforehand
            (`repr_asr.audio.load_audio` does).
        padding_value (`float`, defaults to 0.0): value written into padded positions.
        do_normalize (`bool`, defaults to `False`): zero-mean, unit-variance normalisation of each
            utterance over its real samples only. Off by default because the WaveNet autoencoder
            reconstructs the waveform itself, on its original scale.
        return_attention_mask (`bool`, defaults to `True`): return the mask marking real samples.

    Inputs (``raw_speech``): a 1-D array (one utterance), a list of arrays (a batch), or a 2-D array
    ``(batch, samples)`` (a batch, the Hugging Face convention); torch tensors follow the same rules.
    A 2-D array whose second axis has at most 8 entries and whose first is longer is one
    ``(samples, channels)`` utterance (soundfile's layout) and is averaged to mono; one whose axes are
    both at most 8 long is ambiguous and raises :class:`~repr_asr.audio.AudioError`. Items of a list may
    be ``(samples, channels)`` or ``(channels, samples)`` (:func:`repr_asr.audio.to_mono`). Integer PCM
    (int16, int32, int8, uint8) is scaled to [-1, 1) as soundfile scales PCM files; float audio is used
    as given. Empty or non-finite inputs raise :class:`~repr_asr.audio.AudioError` naming the input.

    Example:
        >>> import numpy as np
        >>> from repr_asr import ReprFeatureExtractor
        >>> fe = ReprFeatureExtractor()
        >>> batch = fe([np.zeros(16000, np.float32), np.zeros(8000, np.float32)],
        ...            sampling_rate=16000, return_tensors="pt")
        >>> tuple(batch["input_values"].shape), int(batch["attention_mask"][1].sum())
        ((2, 16000), 8000)
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = DEFAULT_SAMPLING_RATE,
        padding_value: float = 0.0,
        do_normalize: bool = False,
        return_attention_mask: bool = True,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.do_normalize = do_normalize

    @staticmethod
    def _waveforms(raw_speech) -> list[np.ndarray]:
        """``raw_speech`` → a list of float32 mono waveforms, following the rules of the class docstring."""
        if hasattr(raw_speech, "detach"):  # a torch tensor follows the numpy rules
            raw_speech = raw_speech.detach().cpu().numpy()
        if isinstance(raw_speech, np.ndarray) and raw_speech.ndim == 2:
            rows, cols = raw_speech.shape
            if cols <= MAX_CHANNELS < rows:
                # (samples, channels), soundfile's layout: one multi-channel utterance, not a batch of
                # `rows` utterances of `cols` samples each.
                raw_speech = [raw_speech]
            elif cols <= MAX_CHANNELS:
                raise AudioError(
                    f"input of shape {raw_speech.shape}: cannot tell a (batch, samples) batch of {rows} utterances of "
                    f"{cols} samples from (samples, channels) audio; pass a list of 1-D arrays for a batch"
                )
            # otherwise (batch, samples), the Hugging Face convention; channels-first audio must be
            # downmixed first or passed inside a list (a list item may be (channels, samples)).
        is_batched = isinstance(raw_speech, np.ndarray) and raw_speech.ndim == 2 or (
            isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and not np.isscalar(raw_speech[0])
        )
        if not is_batched:
            raw_speech = [raw_speech]
        waveforms = []
        for i, speech in enumerate(raw_speech):
            if hasattr(speech, "detach"):
                speech = speech.detach().cpu().numpy()
            # Integer PCM is scaled to [-1, 1) and multi-channel items averaged, as files are decoded. No
            # peak limit: callers may pass audio they scaled themselves (e.g. already normalised).
            waveforms.append(array_to_waveform(speech, f"input {i}", max_peak=None))
        return waveforms

    @staticmethod
    def _normalize(waveform: np.ndarray) -> np.ndarray:
        return (waveform - waveform.mean()) / np.sqrt(waveform.var() + 1e-7)

    def __call__(
        self,
        raw_speech: Union[np.ndarray, list],
        sampling_rate: Optional[int] = None,
        padding: Union[bool, str] = "longest",
        max_length: Optional[int] = None,
        truncation: bool = False,
        pad_to_multiple_of: Optional[int] = None,
        return_attention_mask: Optional[bool] = None,
        return_tensors: Optional[Union[str, TensorType]] = None,
        **kwargs,
    ) -> BatchFeature:
        if sampling_rate is None:
            raise ValueError(
                f"{type(self).__name__} needs `sampling_rate` ({self.sampling_rate}) to guard against wrong "
                "features from audio at another rate; pass sampling_rate=..."
            )
        if sampling_rate != self.sampling_rate:
            raise ValueError(
                f"audio at {sampling_rate} Hz given to a feature extractor for {self.sampling_rate} Hz: "
                f"resample first (repr_asr.audio.load_audio(path, sampling_rate={self.sampling_rate}) does)"
            )
        waveforms = [self._normalize(w) if self.do_normalize else w for w in self._waveforms(raw_speech)]

        padded = self.pad(
            BatchFeature({"input_values": waveforms}),
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=self.return_attention_mask if return_attention_mask is None else return_attention_mask,
            return_tensors=None,
        )
        values = padded["input_values"]
        padded["input_values"] = [np.asarray(v, dtype=np.float32) for v in values]
        if "attention_mask" in padded:
            padded["attention_mask"] = [np.asarray(m, dtype=np.int32) for m in padded["attention_mask"]]
        if return_tensors is not None:
            padded = padded.convert_to_tensors(return_tensors)
        return padded
