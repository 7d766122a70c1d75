"""The feature extractor every upstream shares: raw 16 kHz waveform in, padded ``input_values`` out.

The models compute MFCC / filterbanks themselves (DESIGN.md §1), so the extractor only validates,
optionally normalises each utterance over its real samples, pads and builds the attention mask.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import TensorType

from .audio import DEFAULT_SAMPLING_RATE, AudioError, validate_waveform


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
        is_batched = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and not np.isscalar(raw_speech[0])
        if isinstance(raw_speech, np.ndarray) and raw_speech.ndim == 2:
            is_batched = True
        if not is_batched:
            raw_speech = [raw_speech]
        waveforms = []
        for i, speech in enumerate(raw_speech):
            if hasattr(speech, "detach"):
                speech = speech.detach().cpu().numpy()
            try:
                waveform = validate_waveform(np.asarray(speech, dtype=np.float32), f"input {i}")
            except AudioError as error:
                raise AudioError(f"{error} (stereo audio must be downmixed to mono first)" if np.ndim(speech) == 2 else str(error)) from None
            waveforms.append(self._normalize(waveform) if self.do_normalize else waveform)

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
