"""What a VQ bottleneck's codes are: usage, perplexity, bitrate, and how they line up with phones and speakers.

The paper inspects the VQ-VAE's codes (Chorowski et al. 2019, §"VQ-VAE token interpretability"):
how many of the K codes are used, how evenly, and whether a code stands for a phone (or for a
speaker). For each frame of a split the code is the nearest codebook row to the ``proj`` features
(exactly what the bottleneck emits); frames are labelled with the phone covering their centre
(:func:`repr_asr.evaluation.probes.segment_frame_labels`) and their speaker. Reported:

* ``codes_used`` / ``codebook_size``, ``perplexity`` (exp of the code entropy), ``entropy_bits`` and
  ``bitrate`` (bits per second at the latent rate, from the empirical entropy, not log2 K);
* ``phone_purity``: share of phone-labelled frames whose phone is their code's most frequent one, with
  ``phone_majority`` (the most frequent phone's share) as its floor;
* ``phone_nmi`` / ``speaker_nmi``: mutual information between codes and phones (speakers) divided by
  the phone (speaker) entropy — 1 when the codes determine it, 0 when independent;
* ``mean_run_frames``: average length of runs of one repeated code (segment-like codes give long runs),
  and ``segments_per_second`` (how many such runs a second of speech holds: the rate a sparse,
  segment-level emission would have to send);
* ``nominal_bitrate``: ``log2 K`` bits per latent frame, the rate the codebook allows, next to the
  entropy-based ``bitrate``.

:func:`evaluate_codes` also returns the code × phone co-occurrence counts (``code_phone``) and each used
code's most frequent phones (``top_phones``: "which token fires near which phone"), and, with
``examples``, the codes and phone alignment of a few utterances for the pictures
(:mod:`repr_asr.evaluation.code_figures`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..downstream import results_header
from .probes import IGNORE, segment_frame_labels


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """MI in bits between two equally long integer label arrays."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    return _entropy(joint.sum(1)) + _entropy(joint.sum(0)) - _entropy(joint.ravel())


def code_statistics(
    codes: Sequence[np.ndarray], phones: Sequence[np.ndarray], speakers: Sequence[str], codebook_size: int, frame_rate: float
) -> dict:
    """Statistics of ``codes`` (one ``(frames,)`` int array per utterance) against frame ``phones``
    (same shapes, :data:`IGNORE` where unlabelled) and each utterance's speaker."""
    if not codes or sum(len(c) for c in codes) == 0:
        raise ValueError("code_statistics: no frames")
    flat = np.concatenate(codes).astype(np.int64)
    counts = np.bincount(flat, minlength=codebook_size)
    entropy = _entropy(counts)
    runs = [1 + np.count_nonzero(np.diff(c)) for c in codes if len(c)]
    stats = {
        "frames": int(len(flat)),
        "codebook_size": int(codebook_size),
        "codes_used": int((counts > 0).sum()),
        "entropy_bits": entropy,
        "perplexity": float(2.0 ** entropy),
        "bitrate": entropy * frame_rate,
        "mean_run_frames": float(len(flat) / max(1, sum(runs))),
        "segments_per_second": float(sum(runs) * frame_rate / len(flat)),
        "nominal_bitrate": float(np.log2(codebook_size) * frame_rate),
    }
    labels = np.concatenate(phones).astype(np.int64)
    keep = labels != IGNORE
    if keep.any():
        c, p = flat[keep], labels[keep]
        joint = np.zeros((codebook_size, p.max() + 1))
        np.add.at(joint, (c, p), 1)
        phone_counts = joint.sum(0)
        stats.update(
            phone_purity=100.0 * float(joint.max(1).sum() / keep.sum()),
            phone_majority=100.0 * float(phone_counts.max() / keep.sum()),
            phone_nmi=_mutual_information(c, p) / max(1e-12, _entropy(phone_counts)),
        )
    speaker_ids = {s: i for i, s in enumerate(sorted(set(speakers)))}
    if len(speaker_ids) > 1:
        s = np.concatenate([np.full(len(c), speaker_ids[spk]) for c, spk in zip(codes, speakers)]).astype(np.int64)
        stats["speaker_nmi"] = _mutual_information(flat, s) / max(1e-12, _entropy(np.bincount(s)))
    return stats


def code_phone_counts(codes: Sequence[np.ndarray], phones: Sequence[np.ndarray], codebook_size: int, num_phones: int) -> np.ndarray:
    """``(codebook_size, num_phones)`` int64: how many frames of each phone each code was emitted on
    (frames labelled :data:`IGNORE` are left out)."""
    flat, labels = np.concatenate(codes).astype(np.int64), np.concatenate(phones).astype(np.int64)
    keep = labels != IGNORE
    counts = np.zeros((codebook_size, num_phones), dtype=np.int64)
    np.add.at(counts, (flat[keep], labels[keep]), 1)
    return counts


def top_phones(counts: np.ndarray, phone_names: Sequence[str], k: int = 3) -> list[dict]:
    """Each code seen on a labelled frame, most used first: its frame count, purity (the share of its
    frames on its most frequent phone) and its ``k`` most frequent phones with their shares."""
    rows = []
    for code in np.argsort(-counts.sum(1), kind="stable"):
        total = int(counts[code].sum())
        if total == 0:
            break
        order = np.argsort(-counts[code], kind="stable")[:k]
        shares = [(phone_names[p], float(counts[code, p] / total)) for p in order if counts[code, p] > 0]
        rows.append({"code": int(code), "frames": total, "purity": shares[0][1], "phones": shares})
    return rows


def evaluate_codes(upstream: str, data: str, split: str = "test", max_utterances: Optional[int] = None,
                   cache_dir: Optional[str] = None, device: Optional[str] = None, progress: Optional[bool] = None,
                   examples: int = 0) -> dict:
    """Code statistics of a VQ upstream (a ``wavenet_ae`` folder with ``bottleneck: vq``) on ``split``:
    ``metrics`` (:func:`code_statistics`), ``phones`` with ``code_phone`` (:func:`code_phone_counts`,
    as lists) and ``top_phones`` (:func:`top_phones`), and ``examples``: for the first ``examples``
    utterances their ``id``, ``codes`` and phone segments (``phones``: label, start, end in seconds)."""
    from ..models import resolve_upstream
    from ..modules.bottlenecks import VectorQuantizer
    from .features import extract_features, load_split

    model, extractor, _ = resolve_upstream(upstream)
    quantizer = getattr(model, "bottleneck", None)
    if not isinstance(quantizer, VectorQuantizer):
        raise ValueError(f"{upstream}: code statistics need a VQ bottleneck (model.bottleneck is {type(quantizer).__name__})")
    dataset = load_split(data, split, max_utterances, seed=0)
    extracted = extract_features(model, dataset, ["proj"], cache_dir=cache_dir, device=device,
                                 feature_extractor=extractor, progress=progress)
    frame_rate = extracted.frame_rates["proj"]
    codes, phones, speakers, phone_index = [], [], [], {}
    with torch.no_grad():
        for row, proj in zip(dataset, extracted.features["proj"]):
            codes.append(quantizer.quantize(torch.from_numpy(proj).float()).numpy())
            speakers.append(str(row["speaker_id"]))
            ph = row.get("phones") or {}
            phones.append(segment_frame_labels(ph.get("start") or [], ph.get("end") or [],
                                               [phone_index.setdefault(p, len(phone_index)) for p in ph.get("phone") or []],
                                               len(proj), frame_rate))
    phone_names = list(phone_index)
    counts = code_phone_counts(codes, phones, quantizer.codebook_size, len(phone_names)) if phone_names else None
    shown = []
    for row, utterance_codes in zip(dataset.select(range(min(examples, len(dataset)))), codes):
        ph = row.get("phones") or {}
        shown.append({"id": str(row["id"]), "speaker_id": str(row["speaker_id"]), "codes": utterance_codes.tolist(),
                      "phones": [[p, float(a), float(b)] for p, a, b in zip(ph.get("phone") or [], ph.get("start") or [], ph.get("end") or [])]})
    return {
        **results_header("codes", upstream, model=model, weights_sha256=extracted.info["weights_sha256"],
                         feature_extractor=extracted.info["feature_extractor"], probe_points=["proj"], data=data,
                         split=split),
        "num_utterances": len(codes),
        "frame_rate": frame_rate,
        "metrics": code_statistics(codes, phones, speakers, quantizer.codebook_size, frame_rate),
        "phones": phone_names,
        "code_phone": counts.tolist() if counts is not None else None,
        "top_phones": top_phones(counts, phone_names) if counts is not None else [],
        "examples": shown,
    }

