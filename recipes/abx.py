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

import argparse
import json
import logging
import os

from repr_asr.evaluation.report import write_results
from repr_asr.evaluation.abx import DEFAULT_MAX_SIZE_GROUP, DEFAULT_MAX_X_ACROSS, DEFAULT_SEED, evaluate_abx


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="fbank, mfcc, or a save_pretrained folder")
    parser.add_argument("--data", default="builtin:data/builtin",
                        help="builtin:PATH, librispeech:PATH or hf:NAME_OR_PATH (default: %(default)s, the built-in corpus)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--probe_point", "--probe_points", dest="probe_points", nargs="+", default=None,
                        help="default: every probe point of the upstream")
    parser.add_argument("--context_mode", default="within", choices=["within", "any"],
                        help="within: triphone context (Libri-light); any: context ignored (ZeroSpeech 2021 phoneme ABX)")
    parser.add_argument("--item_file", default=None, help="an existing .item file (default: built from the split's phones)")
    parser.add_argument("--max_utterances", type=int, default=None)
    parser.add_argument("--max_size_group", type=int, default=DEFAULT_MAX_SIZE_GROUP)
    parser.add_argument("--max_x_across", type=int, default=DEFAULT_MAX_X_ACROSS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--cache_dir", default=None, help="feature cache (default: DIR/features)")
    parser.add_argument("--device", default=None, help="where the upstream runs for feature extraction (default: cpu)")
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="also write the features (.npy per utterance) and the .item file for the official evaluators")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.makedirs(args.output_dir, exist_ok=True)
    results = evaluate_abx(
        args.upstream, args.data, args.split, args.probe_points, args.context_mode, args.max_utterances,
        item_file=args.item_file,
        write_items=None if args.item_file else os.path.join(args.output_dir, f"{args.split}.item"),
        cache_dir=args.cache_dir or os.path.join(args.output_dir, "features"), device=args.device,
        max_size_group=args.max_size_group, max_x_across=args.max_x_across, seed=args.seed, export_dir=args.export,
    )
    write_results(args.output_dir, results)
    print(json.dumps(results["metrics"], indent=1))
    return results


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
