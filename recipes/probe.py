"""Probe frozen features: framewise phone, speaker and gender classifiers and log-mel regression.

    python recipes/probe.py --upstream PATH|fbank|mfcc --output_dir DIR [--data SPEC] \
        [--split dev] [--probe_points NAME ...] [--tasks phone speaker gender fbank] [--max_utterances N]

Writes DIR/results.json (what was run, the feature extractor settings and weights hash used, and
metrics per probe point). Features are prepared with the feature extractor saved with the upstream and
cached in DIR/features/ (or --cache_dir), keyed by the weights, extractor settings, probe point and
audio: a later run reuses them only if none of these changed.
"""

import argparse
import json
import logging
import os
from dataclasses import fields

from repr_asr.evaluation.report import write_results
from repr_asr.evaluation.probes import TASKS, ProbeConfig, evaluate_probes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="fbank, mfcc, or a save_pretrained folder")
    parser.add_argument("--data", default="builtin:data/builtin",
                        help="builtin:PATH, librispeech:PATH or hf:NAME_OR_PATH (default: %(default)s, the built-in corpus)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--probe_points", nargs="+", default=None, help="default: every probe point of the upstream")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--max_utterances", type=int, default=None, help="a seeded random subset of the split")
    parser.add_argument("--cache_dir", default=None, help="feature cache (default: DIR/features)")
    parser.add_argument("--device", default=None, help="where the upstream runs for feature extraction (default: cpu)")
    for field in fields(ProbeConfig):  # every ProbeConfig field, e.g. --hidden_size 256 --epochs 10
        parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = ProbeConfig(**{f.name: getattr(args, f.name) for f in fields(ProbeConfig)})
    os.makedirs(args.output_dir, exist_ok=True)
    results = evaluate_probes(
        args.upstream, args.data, args.split, args.probe_points, args.tasks, args.max_utterances, config,
        cache_dir=args.cache_dir or os.path.join(args.output_dir, "features"), device=args.device,
    )
    write_results(args.output_dir, results)
    print(json.dumps(results["metrics"], indent=1))
    return results


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
