"""Train and evaluate a CTC recogniser over an upstream on a small labeled subset.

    accelerate launch recipes/finetune_ctc.py --config configs/ctc/NAME.yaml --upstream PATH|fbank|mfcc \
        --subset {10h,1h,10min} --output_dir DIR [--data SPEC] [--max_steps N] [--tokenizer char|sentencepiece \
        --vocab_size N] [--lm_text FILE] [--resume] [--section.key value ...]

Writes DIR/results.json (what was run + WER/CER per split), DIR/hypotheses.json, DIR/final/ (loadable with
AutoModelForCTC and transformers.pipeline("automatic-speech-recognition", model=DIR/final)),
DIR/metrics.jsonl, DIR/logs/ and DIR/checkpoints/.
"""

import json

from repr_asr.training import parse_recipe_args
from repr_asr.training.finetune_ctc import SUBSETS, load_ctc_config, run_finetune_ctc


def extra_arguments(parser):
    parser.add_argument("--upstream", required=True, help="a pretrained upstream folder / hub name, or fbank / mfcc")
    parser.add_argument("--subset", choices=SUBSETS, help="labeled subset (shortcut for --data.subset)")
    parser.add_argument("--tokenizer", choices=("char", "sentencepiece"), help="output units (--data.tokenizer)")
    parser.add_argument("--vocab_size", type=int, help="sentencepiece vocabulary size (--data.vocab_size)")
    parser.add_argument("--lm_text", help="text file for an n-gram LM used in beam search (--data.lm_text)")


def main(argv=None):
    args, overrides = parse_recipe_args(argv, description=__doc__.splitlines()[0], extra=extra_arguments)
    for name in ("subset", "tokenizer", "vocab_size", "lm_text"):
        if getattr(args, name) is not None:
            overrides[("data", name)] = getattr(args, name)
    run = load_ctc_config(args.config, overrides)
    results = run_finetune_ctc(run, args.upstream, args.output_dir, resume=args.resume, config_path=args.config)
    print(json.dumps({"upstream": results["upstream"], "subset": results["subset"], "metrics": results["metrics"]}, indent=1))


if __name__ == "__main__":
    main()
