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

import json

from repr_asr.downstream.speaker_id import SpeakerIDConfig, evaluate_speaker_id
from repr_asr.evaluation.analysis_cli import analysis_parser, cache_dir, run_analysis_recipe, settings_from


def main(argv=None):
    parser = analysis_parser(
        __doc__, split=None, split_help="default: pretrain, else the first of train-1h, train-10h, train-10min with speakers",
        probe_points="default: every probe point of the upstream, and weighted_sum (their learned mix) where it exists",
        settings=SpeakerIDConfig)
    args = parser.parse_args(argv)
    results = run_analysis_recipe(args, lambda: evaluate_speaker_id(
        args.upstream, args.data, args.split, args.probe_points, settings_from(args, SpeakerIDConfig),
        cache_dir=cache_dir(args), device=args.device,
    ))
    print(json.dumps(results["metrics"], indent=1))
    return results


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
