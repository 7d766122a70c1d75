"""Speaker identification: a classifier on mean-pooled frozen features over the speakers of a training split.

    python recipes/speaker_id.py --upstream PATH|fbank|mfcc --output_dir DIR [--data SPEC] [--split pretrain] \
        [--probe_points NAME ... | weighted_sum] [--max_utterances N] [--max_utterances_per_speaker N] [--seed S]

Per probe point (and the learned mix of probe points, `weighted_sum`, where the upstream has one): accuracy
on held-out utterances of the training speakers, next to the majority rate (see
repr_asr/downstream/speaker_id.py). --split defaults to the `pretrain` pool, else the first labeled
subset with named speakers. Writes DIR/results.json: the shared header (task, upstream, weights hash,
feature extractor settings, probe points, data, split, seed, package versions), the counts, the
utterance ids of each side and the metrics per probe point. Features are prepared with the feature
extractor saved with the upstream and cached in DIR/features/ (or --cache_dir), keyed by the weights,
extractor settings, probe point and audio (shared with recipes/probe.py and recipes/abx.py).
"""

import argparse
import json
import logging
import os
from dataclasses import fields

from repr_asr.downstream.speaker_id import SpeakerIDConfig, evaluate_speaker_id
from repr_asr.evaluation.report import write_results
from repr_asr.training.config import documented_fields


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="fbank, mfcc, or a save_pretrained folder")
    parser.add_argument("--data", default="builtin:data/builtin",
                        help="builtin:PATH, librispeech:PATH or hf:NAME_OR_PATH (default: %(default)s, the built-in corpus)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default=None, help="default: pretrain, else the first of train-1h, train-10h, train-10min with speakers")
    parser.add_argument("--probe_points", nargs="+", default=None,
                        help="default: every probe point of the upstream, and weighted_sum (their learned mix) where it exists")
    parser.add_argument("--cache_dir", default=None, help="feature cache (default: DIR/features)")
    parser.add_argument("--device", default=None, help="where the upstream runs for feature extraction (default: cpu)")
    docs = documented_fields(SpeakerIDConfig)
    for field in fields(SpeakerIDConfig):  # every SpeakerIDConfig field, e.g. --max_utterances 400 --no-layer_mix
        meaning = (docs[field.name].meaning if field.name in docs else "").replace("%", "%%")
        if isinstance(field.default, bool):
            parser.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction, default=field.default, help=meaning)
        else:
            parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default,
                                help=f"{meaning} (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = SpeakerIDConfig(**{f.name: getattr(args, f.name) for f in fields(SpeakerIDConfig)})
    os.makedirs(args.output_dir, exist_ok=True)
    results = evaluate_speaker_id(
        args.upstream, args.data, args.split, args.probe_points, config,
        cache_dir=args.cache_dir or os.path.join(args.output_dir, "features"), device=args.device,
    )
    write_results(args.output_dir, results)
    print(json.dumps(results["metrics"], indent=1))
    return results


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
