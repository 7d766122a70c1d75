"""Frozen features of a corpus split at every probe point of an upstream, for probes and ABX.

:func:`extract_features` runs an upstream (``repr_asr.models.load_upstream``) over a split in batches
of similar length, trims each utterance to its real frames at each probe point and returns them as
float32 numpy arrays ``(frames, dim)``. With ``cache_dir`` the result is written as one
``features-<probe_point>.safetensors`` file per probe point (tensors keyed by utterance id) and read
back on the next call whose ``cache_key`` and utterance ids match, so a probe and an ABX run on the
same upstream share one extraction.

Frame timing convention (shared by the probes and ABX): frame ``t`` at a probe point of rate ``r``
frames per second covers ``[t / r, (t + 1) / r)`` seconds and its centre is ``(t + 0.5) / r`` — the
convention of Libri-light's frame-wise phone alignments and of its ABX evaluator.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..audio import decode_audio
from ..feature_extraction import ReprFeatureExtractor

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cache layout or the extraction changes meaning


@dataclass
class SplitFeatures:
    """Features of one split: ``features[probe_point][i]`` is utterance ``ids[i]``'s ``(frames, dim)`` array."""

    ids: list[str]
    features: dict[str, list[np.ndarray]]
    frame_rates: dict[str, float]
    info: dict = field(default_factory=dict)

    def as_dict(self, probe_point: str) -> dict[str, np.ndarray]:
        """``{utterance id: (frames, dim)}`` at ``probe_point`` (the form ABX takes)."""
        return dict(zip(self.ids, self.features[probe_point]))


def length_batches(lengths: Sequence[int], max_samples: int) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size (batch × longest) stays within
    ``max_samples``; an utterance longer than ``max_samples`` gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted ascending, so the newest utterance is the longest of the batch.
        if current and (len(current) + 1) * lengths[index] > max_samples:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def _cache_path(cache_dir: Path, probe_point: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in probe_point)
    return cache_dir / f"features-{safe}.safetensors"


def _read_cache(cache_dir: Path, probe_point: str, ids: list[str], cache_key: str):
    from safetensors import safe_open

    path = _cache_path(cache_dir, probe_point)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
            if (
                meta.get("format") != str(CACHE_FORMAT)
                or meta.get("cache_key") != cache_key
                or meta.get("ids_sha256") != _ids_digest(ids)
            ):
                logger.info("%s: cached features are for another upstream / split; extracting again", path)
                return None
            arrays = [handle.get_tensor(utt_id) for utt_id in ids]
            return arrays, float(meta["frame_rate"])
    except Exception as error:  # a truncated or foreign file is recomputed, not trusted
        logger.warning("%s: unreadable feature cache (%s); extracting again", path, error)
        return None


def _write_cache(cache_dir: Path, probe_point: str, ids: list[str], arrays: list[np.ndarray], frame_rate: float, cache_key: str):
    from safetensors.numpy import save_file

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = _cache_path(cache_dir, probe_point)
    tmp = path.with_suffix(".tmp")
    meta = {
        "format": str(CACHE_FORMAT),
        "cache_key": cache_key,
        "ids_sha256": _ids_digest(ids),
        "frame_rate": repr(frame_rate),
        "probe_point": probe_point,
    }
    save_file({utt_id: np.ascontiguousarray(a) for utt_id, a in zip(ids, arrays)}, str(tmp), metadata=meta)
    os.replace(tmp, path)  # atomic: a crashed run never leaves half a cache behind


@torch.no_grad()
def _run(model, waveforms: list[np.ndarray], probe_points: list[str], feature_extractor, device) -> dict[str, list[np.ndarray]]:
    batch = feature_extractor(waveforms, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt")
    input_values = batch["input_values"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    output = model(input_values, attention_mask=attention_mask, output_hidden_states=True)
    sample_lengths = attention_mask.long().sum(-1)
    out: dict[str, list[np.ndarray]] = {}
    for index, name in enumerate(model.probe_points):
        if name not in probe_points:
            continue
        hidden = output.hidden_states[index].detach().float()  # (B, T, D)
        lengths = model.frame_lengths(sample_lengths, name).clamp(max=hidden.shape[1])
        out[name] = [hidden[b, : int(lengths[b])].cpu().numpy() for b in range(hidden.shape[0])]
    return out


def extract_features(
    model,
    dataset,
    probe_points: Optional[Sequence[str]] = None,
    max_batch_seconds: float = 200.0,
    cache_dir: Union[str, os.PathLike, None] = None,
    cache_key: str = "",
    device: Union[str, torch.device] = "cpu",
    feature_extractor: Optional[ReprFeatureExtractor] = None,
) -> SplitFeatures:
    """Frozen features of every utterance of ``dataset`` (a corpus split) at ``probe_points``.

    Args:
        model: an upstream (``repr_asr.models.load_upstream``); run in eval mode without gradients.
        dataset: rows with ``id`` and ``audio`` (decoded with ``repr_asr.audio.decode_audio``);
            ``duration`` (seconds), when present, orders the batches without decoding twice.
        probe_points: names from ``model.probe_points`` (default: all of them).
        max_batch_seconds: padded audio per batch (batch size × longest utterance), in seconds.
        cache_dir: read / write ``features-<probe_point>.safetensors`` here (None: no cache).
        cache_key: what identifies the upstream and data (e.g. ``"<upstream>|<data spec>|<split>"``);
            a cache written under another key or for other utterance ids is recomputed.
        device: where the upstream runs.
        feature_extractor: pads the waveforms (default: ``ReprFeatureExtractor()``).
    """
    available = list(model.probe_points)
    probe_points = list(probe_points or available)
    unknown = [p for p in probe_points if p not in available]
    if unknown:
        raise ValueError(f"probe point(s) {unknown} not offered by this upstream (it has {available})")
    ids = [str(i) for i in dataset["id"]]
    if len(set(ids)) != len(ids):
        raise ValueError("extract_features: the split has duplicate utterance ids")
    frame_rates = {p: float(model.frame_rate(p)) for p in probe_points}
    features: dict[str, list[np.ndarray]] = {}
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        for point in probe_points:
            hit = _read_cache(cache, point, ids, cache_key)
            if hit is not None:
                features[point] = hit[0]
    todo = [p for p in probe_points if p not in features]
    if todo and ids:
        feature_extractor = feature_extractor or ReprFeatureExtractor()
        sampling_rate = feature_extractor.sampling_rate
        was_training = model.training
        model.eval().to(device)
        if "duration" in dataset.column_names:
            lengths = [int(round(float(d) * sampling_rate)) for d in dataset["duration"]]
        else:
            lengths = [len(decode_audio(row["audio"], sampling_rate, name=row["id"])) for row in dataset]
        collected: dict[str, list] = {p: [None] * len(ids) for p in todo}
        for batch in length_batches(lengths, max(1, int(max_batch_seconds * sampling_rate))):
            rows = dataset.select(batch)
            waveforms = [decode_audio(row["audio"], sampling_rate, name=row["id"]) for row in rows]
            out = _run(model, waveforms, todo, feature_extractor, device)
            for point in todo:
                for index, array in zip(batch, out[point]):
                    collected[point][index] = array
        model.train(was_training)
        for point in todo:
            features[point] = collected[point]
            if cache is not None:
                _write_cache(cache, point, ids, collected[point], frame_rates[point], cache_key)
    elif todo:
        features.update({p: [] for p in todo})
    return SplitFeatures(ids=ids, features={p: features[p] for p in probe_points}, frame_rates=frame_rates,
                         info={"cache_key": cache_key, "probe_points": probe_points})


def load_split(data: str, split: str, max_utterances: Optional[int] = None, seed: int = 0):
    """Rows of ``split`` of the corpus ``data`` (a ``--data`` spec); ``max_utterances`` keeps a seeded
    random subset (so a small subset still spans several speakers)."""
    from ..data import load_corpus

    corpus = load_corpus(data)
    try:
        dataset = corpus[split]
    except KeyError as error:
        raise KeyError(f"corpus {data}: no split {split!r} ({error})") from None
    if max_utterances is not None and max_utterances < len(dataset):
        dataset = dataset.shuffle(seed=seed).select(range(max_utterances))
    return dataset


def upstream_name(upstream: str) -> str:
    """A short name for tables: ``fbank`` / ``mfcc`` or the folder name of a pretrained upstream."""
    path = Path(str(upstream).rstrip("/"))
    return path.parent.name if path.name == "final" else path.name
