"""Resynthesis and voice conversion with a WaveNet autoencoder: WAV files to listen to.

    python recipes/resynthesize.py --upstream hub/wavenet_vq --output_dir DIR [--data SPEC] [--split test] \
        [--num_utterances 3] [--target_speakers 2 | --speakers ID ...] [--max_seconds 2.0] [--temperature 1.0]

For each of --num_utterances utterances of --split (a seeded random choice, cut to --max_seconds) it
writes DIR/original/ID.wav, DIR/resynthesized/ID.wav (decoded with the utterance's own speaker
embedding; a speaker never seen in pretraining, as on test, gets the average of the training speakers'
embeddings) and DIR/converted/ID-to-SPEAKER.wav for each target training speaker. All of them are
generated together, sample by sample with the decoder's cached convolutions, behind a progress bar;
DIR/results.json lists the files and the generation speed in samples per second.
"""

import argparse
import json
import logging
import os
import time

import numpy as np
import torch

from repr_asr.audio import decode_audio, save_audio
from repr_asr.evaluation.features import load_split
from repr_asr.evaluation.report import write_results
from repr_asr.models import load_feature_extractor, load_upstream
from repr_asr.modules.conditioning import AVERAGE_SPEAKER


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="a save_pretrained folder of a WaveNet autoencoder")
    parser.add_argument("--data", default="builtin:data/builtin",
                        help="builtin:PATH, librispeech:PATH or hf:NAME_OR_PATH (default: %(default)s, the built-in corpus)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_utterances", type=int, default=3)
    parser.add_argument("--speakers", nargs="+", default=None, help="target training speakers (ids of the model's config.speakers)")
    parser.add_argument("--target_speakers", type=int, default=2, help="without --speakers: this many training speakers, spread over the list")
    parser.add_argument("--max_seconds", type=float, default=2.0, help="cut each utterance to this length (generation is sample by sample)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: the most likely sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="where to generate (default: cpu)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    model = load_upstream(args.upstream)
    if not hasattr(model, "resynthesize"):
        raise ValueError(f"{args.upstream}: a {type(model).__name__} has no decoder to resynthesize with (use a WaveNet autoencoder)")
    model.to(args.device or "cpu").eval()
    extractor = load_feature_extractor(args.upstream)
    known = list(model.config.speakers) if model.config.speaker_conditioning else []
    if args.speakers:
        unknown = [s for s in args.speakers if s not in known]
        if unknown:
            raise ValueError(f"--speakers {unknown}: not training speakers of {args.upstream} (it knows {len(known)}: {known[:8]}...)")
        targets = list(args.speakers)
    else:
        count = min(args.target_speakers, len(known))
        targets = [known[int(k)] for k in np.linspace(0, len(known) - 1, count)] if count else []

    rows = load_split(args.data, args.split, args.num_utterances, seed=args.seed)
    limit = int(args.max_seconds * extractor.sampling_rate)
    jobs = []  # (utterance, kind, target speaker or None, speaker id, waveform)
    os.makedirs(os.path.join(args.output_dir, "original"), exist_ok=True)
    files = []
    for row in rows:
        utt, speaker = str(row["id"]), str(row["speaker_id"])
        waveform = decode_audio(row["audio"], extractor.sampling_rate, name=utt)[:limit]
        original = os.path.join("original", f"{utt}.wav")
        save_audio(os.path.join(args.output_dir, original), waveform, extractor.sampling_rate)
        files.append({"id": utt, "speaker": speaker, "kind": "original", "path": original, "seconds": len(waveform) / extractor.sampling_rate})
        if known:
            own = known.index(speaker) if speaker in known else AVERAGE_SPEAKER
            jobs.append((utt, speaker, "resynthesized", speaker if speaker in known else "average", own, waveform))
            jobs += [(utt, speaker, "converted", target, known.index(target), waveform) for target in targets if target != speaker]
        else:  # no speaker conditioning: the decoder hears only the latents
            jobs.append((utt, speaker, "resynthesized", None, None, waveform))

    batch = extractor([job[-1] for job in jobs], sampling_rate=extractor.sampling_rate, return_tensors="pt")
    speaker_ids = torch.tensor([job[4] for job in jobs]) if known else None
    generator = torch.Generator().manual_seed(args.seed)
    device = next(model.parameters()).device
    started = time.perf_counter()
    generated = model.resynthesize(batch["input_values"].to(device), batch["attention_mask"].to(device),
                                   speaker_ids=None if speaker_ids is None else speaker_ids.to(device),
                                   temperature=args.temperature, generator=generator if device.type == "cpu" else None, progress=True)
    seconds = time.perf_counter() - started
    generated = generated.float().cpu().numpy()
    for (utt, speaker, kind, target, _, waveform), audio in zip(jobs, generated):
        name = f"{utt}.wav" if kind == "resynthesized" else f"{utt}-to-{target}.wav"
        path = os.path.join(kind, name)
        os.makedirs(os.path.join(args.output_dir, kind), exist_ok=True)
        save_audio(os.path.join(args.output_dir, path), audio[: len(waveform)], extractor.sampling_rate)
        files.append({"id": utt, "speaker": speaker, "kind": kind, "voice": target, "path": path,
                      "seconds": len(waveform) / extractor.sampling_rate})
    samples = int(batch["input_values"].shape[0] * batch["input_values"].shape[-1])
    results = {
        "task": "resynthesis",
        "upstream": str(args.upstream),
        "data": args.data,
        "split": args.split,
        "temperature": args.temperature,
        "seed": args.seed,
        "target_speakers": targets,
        "files": files,
        "generated_samples": samples,
        "generation_seconds": seconds,
        "samples_per_second": samples / seconds,
        "device": str(device),
    }
    write_results(args.output_dir, results)
    print(f"{len(jobs)} waveforms ({samples} samples) in {seconds:.1f} s: {samples / seconds:.0f} samples/s on {device}")
    print(json.dumps([f["path"] for f in files], indent=1))
    return results


if __name__ == "__main__":
    main()
