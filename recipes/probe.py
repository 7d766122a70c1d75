"""Probe frozen features: framewise phone, speaker and gender classifiers and log-mel regression.

    python recipes/probe.py --upstream PATH|fbank|mfcc --output_dir DIR [--data SPEC] \
        [--split dev] [--probe_points NAME ...] [--tasks phone speaker gender fbank] [--max_utterances N]

Writes DIR/results.json (what was run, the feature extractor settings and weights hash used, and
metrics per probe point). Features are prepared with the feature extractor saved with the upstream and
cached in DIR/features/ (or --cache_dir), keyed by the weights, extractor settings, probe point and
audio: a later run reuses them only if none of these changed.
"""

import json

from repr_asr.evaluation.analysis_cli import analysis_parser, cache_dir, run_analysis_recipe, settings_from
from repr_asr.evaluation.probes import TASKS, ProbeConfig, evaluate_probes


def main(argv=None):
    parser = analysis_parser(__doc__, probe_points="default: every probe point of the upstream", settings=ProbeConfig)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--max_utterances", type=int, default=None, help="a seeded random subset of the split")
    args = parser.parse_args(argv)
    results = run_analysis_recipe(args, lambda: evaluate_probes(
        args.upstream, args.data, args.split, args.probe_points, args.tasks, args.max_utterances,
        settings_from(args, ProbeConfig), cache_dir=cache_dir(args), device=args.device,
    ))
    print(json.dumps(results["metrics"], indent=1))
    return results


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
