"""Resynthesis and voice conversion with a WaveNet autoencoder, written as WAV files.

:func:`resynthesize_utterances` takes a few utterances of a split (a seeded random choice, cut to
``max_seconds``) and writes ``original/ID.wav``, ``resynthesized/ID.wav`` (decoded with the utterance's
own speaker embedding; a speaker never seen in pretraining, as on test, gets the average of the training
speakers' embeddings) and ``converted/ID-to-SPEAKER.wav`` for each target training speaker. All are
generated in one batch, sample by sample with the decoder's cached convolutions.
"""

from __future__ import annotations

import os
import time
from typing import Optional, Sequence

import numpy as np
import torch

from ..audio import decode_audio, save_audio
from ..downstream import results_header
from ..modules.conditioning import AVERAGE_SPEAKER
from .features import extractor_settings, load_split, model_digest


def pick_targets(known: Sequence[str], speakers: Optional[Sequence[str]], count: int, upstream: str) -> list[str]:
    """The target voices: ``speakers`` (each must be a training speaker), else ``count`` spread over ``known``."""
    if speakers:
        unknown = [s for s in speakers if s not in known]
        if unknown:
            raise ValueError(f"speakers {unknown}: not training speakers of {upstream} (it knows {len(known)}: {list(known)[:8]}...)")
        return list(speakers)
    count = min(count, len(known))
    return [known[int(k)] for k in np.linspace(0, len(known) - 1, count)] if count else []


def resynthesize_utterances(
    upstream: str,
    data: str,
    output_dir: str,
    split: str = "test",
    num_utterances: int = 3,
    speakers: Optional[Sequence[str]] = None,
    target_speakers: int = 2,
    max_seconds: float = 2.0,
    temperature: float = 1.0,
    seed: int = 0,
    device: Optional[str] = None,
    progress: Optional[bool] = None,
) -> dict:
    """Write the WAVs into ``output_dir`` and return the ``results.json`` dictionary: the ``files`` (id,
    speaker, kind, voice, path relative to ``output_dir``, seconds) and the generation speed."""
    from ..models import resolve_upstream

    model, extractor, _ = resolve_upstream(upstream)
    if not hasattr(model, "resynthesize"):
        raise ValueError(f"{upstream}: a {type(model).__name__} has no decoder to resynthesize with (use a WaveNet autoencoder)")
    model.to(device or "cpu").eval()
    rate = extractor.sampling_rate
    known = list(model.config.speakers) if model.config.speaker_conditioning else []
    targets = pick_targets(known, speakers, target_speakers, upstream)
    limit = int(max_seconds * rate)
    jobs = []  # (utterance, speaker, kind, voice, speaker id, waveform)
    files = []
    os.makedirs(os.path.join(output_dir, "original"), exist_ok=True)
    for row in load_split(data, split, num_utterances, seed=seed):
        utt, speaker = str(row["id"]), str(row["speaker_id"])
        waveform = decode_audio(row["audio"], rate, name=utt)[:limit]
        original = os.path.join("original", f"{utt}.wav")
        save_audio(os.path.join(output_dir, original), waveform, rate)
        files.append({"id": utt, "speaker": speaker, "kind": "original", "voice": speaker, "path": original, "seconds": len(waveform) / rate})
        if known:
            own = known.index(speaker) if speaker in known else AVERAGE_SPEAKER
            jobs.append((utt, speaker, "resynthesized", speaker if speaker in known else "average", own, waveform))
            jobs += [(utt, speaker, "converted", target, known.index(target), waveform) for target in targets if target != speaker]
        else:  # no speaker conditioning: the decoder hears only the latents
            jobs.append((utt, speaker, "resynthesized", None, None, waveform))
    batch = extractor([job[-1] for job in jobs], sampling_rate=rate, return_tensors="pt")
    where = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if where.type == "cpu" else None
    started = time.perf_counter()
    generated = model.resynthesize(batch["input_values"].to(where), batch["attention_mask"].to(where),
                                   speaker_ids=torch.tensor([job[4] for job in jobs], device=where) if known else None,
                                   temperature=temperature, generator=generator, progress=progress)
    seconds = time.perf_counter() - started
    for (utt, speaker, kind, voice, _, waveform), audio in zip(jobs, generated.float().cpu().numpy()):
        path = os.path.join(kind, f"{utt}.wav" if kind == "resynthesized" else f"{utt}-to-{voice}.wav")
        os.makedirs(os.path.join(output_dir, kind), exist_ok=True)
        save_audio(os.path.join(output_dir, path), audio[: len(waveform)], rate)
        files.append({"id": utt, "speaker": speaker, "kind": kind, "voice": voice, "path": path, "seconds": len(waveform) / rate})
    samples = int(batch["input_values"].shape[0] * batch["input_values"].shape[-1])
    return {
        **results_header("resynthesis", upstream, model=model, weights_sha256=model_digest(model),
                         feature_extractor=extractor_settings(extractor), data=data, split=split, seed=seed),
        "temperature": temperature,
        "target_speakers": targets,
        "files": files,
        "generated_samples": samples,
        "generation_seconds": seconds,
        "samples_per_second": samples / seconds,
        "device": str(where),
    }
