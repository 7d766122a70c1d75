"""Write an upstream's frozen features of a corpus split to disk: DIR/POINT/ID.npy (frames x dim, float32).

    accelerate launch recipes/extract_features.py --upstream PATH|fbank|mfcc --data SPEC --output_dir DIR \
        [--split test] [--probe_points enc bn ...] [--streaming] [--max_utterances N] [--strict]

--streaming reads an hf:NAME_OR_PATH corpus as a stream (repr_asr.data.streaming); processes split the
utterances and each writes its own files. Rerunning into the same DIR resumes: an utterance whose files all
exist is passed over without being decoded; a DIR written by another export (other upstream weights, data,
split or probe points) is refused, and so is a DIR another process is exporting into. Undecodable audio is
skipped and listed in DIR/skipped-RANK.tsv (--strict stops instead). DIR/export.json records the upstream (and
its weights' hash), data, probe points and their frame steps.
"""

import argparse
import json

from repr_asr.evaluation.feature_export import export_features


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="a pretrained upstream folder / hub name, or fbank / mfcc")
    parser.add_argument("--data", required=True, help="corpus spec: builtin:PATH, librispeech:PATH or hf:NAME_OR_PATH")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--probe_points", nargs="+", help="default: every probe point of the upstream")
    parser.add_argument("--streaming", action="store_true", help="stream an hf: corpus")
    parser.add_argument("--max_utterances", type=int)
    parser.add_argument("--strict", action="store_true", help="stop at the first undecodable utterance")
    parser.add_argument("--device", help="e.g. cuda (default: where the model loads, the CPU)")
    args = parser.parse_args(argv)
    counts = export_features(args.upstream, args.data, args.output_dir, split=args.split, probe_points=args.probe_points,
                             streaming=args.streaming, max_utterances=args.max_utterances, strict=args.strict,
                             device=args.device)
    print(json.dumps({k: (len(v) if isinstance(v, list) else v) for k, v in counts.items()}))


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
