"""Score an ABX export with ``fastabx`` (https://pypi.org/project/fastabx/), for ``bench/run.py``'s abx row.

fastabx needs Python >= 3.12, newer than the project's interpreter, so ``bench/run.py`` runs this file
with the interpreter named by ``BENCH_FASTABX_PYTHON`` (a separate virtual environment with fastabx
installed). It imports neither ``repr_asr`` nor anything the project installs: only fastabx, numpy and
torch.

    $BENCH_FASTABX_PYTHON bench/fastabx_abx.py ITEM_FILE FEATURES_DIR --frequency 100

Prints one JSON object: ``{"within": error, "across": error, "seconds": s, "fastabx": version}`` (error
rates in [0, 1], the seconds of both scorings, features loaded from disk included), or ``{"skipped":
why}`` when fastabx cannot be imported.
"""

import argparse
import json
import os
import sys
import time

# Slice tokens as Libri-light's evaluator (and ours, repr_asr/evaluation/abx.py) does: frames up to
# floor(r * offset - 0.5), exclusive. fastabx by default keeps one more frame at the end (it calls the
# Libri-light convention a bug), which would compare different tokens.
os.environ["FASTABX_WITH_LIBRILIGHT_BUG"] = "1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("item_file")
    parser.add_argument("features_dir", help="one FILE_ID.npy (frames, dim) float32 array per utterance")
    parser.add_argument("--frequency", type=int, required=True, help="frames per second of the features")
    parser.add_argument("--max_size_group", type=int, default=10, help="a negative value: no subsampling")
    parser.add_argument("--max_x_across", type=int, default=5, help="a negative value: every other speaker")
    args = parser.parse_args()
    try:
        from importlib.metadata import version

        import numpy as np
        import torch
        from fastabx import zerospeech_abx
    except ImportError as error:
        print(json.dumps({"skipped": f"{sys.executable} cannot import fastabx ({error}): pip install fastabx"}))
        return

    def load(path):
        return torch.from_numpy(np.load(path))

    started = time.perf_counter()
    scores = {
        mode: zerospeech_abx(args.item_file, args.features_dir,
                             max_size_group=args.max_size_group if args.max_size_group >= 0 else None,
                             max_x_across=args.max_x_across if args.max_x_across >= 0 else None, speaker=mode, context="within", distance="angular",
                             frequency=args.frequency, feature_maker=load, extension=".npy", device="cpu",
                             progress=False)
        for mode in ("within", "across")
    }
    print(json.dumps({**scores, "seconds": time.perf_counter() - started, "fastabx": version("fastabx")}))


if __name__ == "__main__":
    main()
