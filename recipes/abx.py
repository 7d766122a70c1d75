"""ABX phone discrimination of frozen features (Libri-light / ZeroSpeech 2021 conventions).

    python recipes/abx.py --upstream PATH|fbank|mfcc --output_dir DIR [--data SPEC] \
        [--split dev] [--probe_point NAME ...] [--context_mode within|any] [--item_file FILE] [--max_utterances N] \
        [--export DIR]

Writes DIR/results.json (within- and across-speaker error in percent per probe point) and, unless an
--item_file is given, the triphone items built from the split's phone timings as DIR/SPLIT.item.
results.json also records the feature extractor settings and the weights hash used. Features are
prepared with the feature extractor saved with the upstream and cached in DIR/features/ (or --cache_dir),
keyed by the weights, extractor settings, probe point and audio (shared with recipes/probe.py).

--export DIR also writes, per probe point, one DIR/POINT/UTTERANCE.npy (frames × dim, float32) and
DIR/POINT/SPLIT.item: the layout the official evaluators read. results.json gives each point's frame
step in seconds (`frame_step_seconds`), their `--feature_size`, e.g.

    zrc-abx2 DIR/enc DIR/enc/dev.item --file_extension .npy --feature_size 0.01
"""

import json
import os

from repr_asr.evaluation.abx import DEFAULT_MAX_SIZE_GROUP, DEFAULT_MAX_X_ACROSS, DEFAULT_SEED, evaluate_abx
from repr_asr.evaluation.analysis_cli import analysis_parser, cache_dir, run_analysis_recipe


def main(argv=None):
    parser = analysis_parser(__doc__, probe_points="default: every probe point of the upstream")
    parser.add_argument("--context_mode", default="within", choices=["within", "any"],
                        help="within: triphone context (Libri-light); any: context ignored (ZeroSpeech 2021 phoneme ABX)")
    parser.add_argument("--item_file", default=None, help="an existing .item file (default: built from the split's phones)")
    parser.add_argument("--max_utterances", type=int, default=None)
    parser.add_argument("--max_size_group", type=int, default=DEFAULT_MAX_SIZE_GROUP)
    parser.add_argument("--max_x_across", type=int, default=DEFAULT_MAX_X_ACROSS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="also write the features (.npy per utterance) and the .item file for the official evaluators")
    args = parser.parse_args(argv)
    results = run_analysis_recipe(args, lambda: evaluate_abx(
        args.upstream, args.data, args.split, args.probe_points, args.context_mode, args.max_utterances,
        item_file=args.item_file,
        write_items=None if args.item_file else os.path.join(args.output_dir, f"{args.split}.item"),
        cache_dir=cache_dir(args), device=args.device,
        max_size_group=args.max_size_group, max_x_across=args.max_x_across, seed=args.seed, export_dir=args.export,
    ))
    print(json.dumps(results["metrics"], indent=1))
    return results


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
