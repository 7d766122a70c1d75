#!/usr/bin/env python
"""Build the built-in corpus: synthetic multi-speaker English read speech in the LibriSpeech layout.

    python recipes/make_corpus.py --output_dir data/builtin --hours 1 --seed 0 --num_workers 2

See :mod:`repr_asr.data.builtin` for the layout, the speakers and how ``--hours`` is split.
"""

import argparse
import json
import os
import sys

from repr_asr.data.builtin import CorpusExistsError, build_corpus


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="corpus root to write (a LibriSpeech root)")
    parser.add_argument("--hours", type=float, default=1.0, help="total hours of audio (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of speakers, sentences and effects (default 0)")
    parser.add_argument("--num_workers", type=int, default=os.cpu_count() or 1, help="synthesis processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace a corpus built with other arguments")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        manifest = build_corpus(
            args.output_dir, hours=args.hours, seed=args.seed, num_workers=args.num_workers,
            overwrite=args.overwrite, progress=not args.no_progress,
        )
    except CorpusExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("hours", "splits", "labeled_subsets", "speakers", "build_seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
