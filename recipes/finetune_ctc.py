"""Train and evaluate a CTC recogniser over an upstream on a small labeled subset.

    accelerate launch recipes/finetune_ctc.py --config configs/ctc/NAME.yaml --upstream PATH|fbank|mfcc \
        --subset {10h,1h,10min} --output_dir DIR [--data SPEC] [--max_steps N] [--tokenizer char|sentencepiece|phone \
        --vocab_size N] [--lm_text FILE | --lm_path ARPA_OR_KENLM_BINARY [--lexicon FILE]] [--push_to_hub REPO] \
        [--init_from CTC_MODEL_DIR] [--resume] [--section.key value ...]

Validates on dev every --training.eval_steps (greedy CER / WER, in DIR/metrics.jsonl) and keeps the step with
the lowest dev CER as DIR/final/ (training.metric_for_best_model: eval_cer; training.early_stopping_patience
evaluations without improvement stop the run). Audio is prepared by the upstream's own saved feature
extractor, for training and in DIR/final/ alike. Undecodable audio is skipped and named (--strict stops).

Decodes greedily, and with beam search over an n-gram word LM when --lm_text (a text to train one on) or
--lm_path (a prebuilt ARPA file or KenLM binary, e.g. Libri-light's LibriSpeech 4-gram, with --lexicon) is
given; beam width and weights are --data.beam_size, --data.lm_weight, --data.word_score.

Writes DIR/results.json (what was run, the step kept and its dev CER, skipped utterances, how it decoded,
WER/CER per split), DIR/hypotheses.json, DIR/final/ (loadable with AutoModelForCTC, AutoProcessor and
transformers.pipeline("automatic-speech-recognition", model=DIR/final); its README.md model card carries the
WER/CER as a model-index), DIR/metrics.jsonl, DIR/logs/ and DIR/checkpoints/; --push_to_hub REPO uploads
DIR/final/ to that hub repo. A DIR that holds checkpoints is refused without --resume, before anything is
written.
"""

import json

from repr_asr.training import parse_recipe_args
from repr_asr.downstream.ctc import SUBSETS, UNITS, CTCDataConfig, load_ctc_config, run_finetune_ctc


def extra_arguments(parser):
    parser.add_argument("--upstream", required=True, help="a pretrained upstream folder / hub name, or fbank / mfcc")
    parser.add_argument("--subset", choices=SUBSETS, help="labeled subset (shortcut for --data.subset)")
    parser.add_argument("--tokenizer", choices=UNITS, help="output units (--data.tokenizer); phone: the corpus's phone "
                        "alignments, scored by PER")
    parser.add_argument("--vocab_size", type=int, help="sentencepiece vocabulary size (--data.vocab_size)")
    parser.add_argument("--lm_text", help="text file for an n-gram LM used in beam search (--data.lm_text)")
    parser.add_argument("--lm_path", help="prebuilt n-gram LM for beam search: ARPA or KenLM binary (--data.lm_path)")
    parser.add_argument("--lexicon", help="the words beam search may output with --lm_path (--data.lexicon)")
    parser.add_argument("--init_from", metavar="DIR", help="start from a trained CTC model (e.g. a frozen run's final/, "
                        "same subset, tokenizer and head): fine-tuning after a linear probe")
    parser.add_argument("--push_to_hub", metavar="REPO", help="upload DIR/final/ to this Hugging Face Hub repo at the end")


def main(argv=None):
    # --help lists the CTC data keys and the CTC head's model keys (the configs name no model_type).
    args, overrides = parse_recipe_args(argv, description=__doc__.splitlines()[0], extra=extra_arguments,
                                        data_cls=CTCDataConfig, model_type="upstream_ctc")
    for name in ("subset", "tokenizer", "vocab_size", "lm_text", "lm_path", "lexicon"):
        if getattr(args, name) is not None:
            overrides[("data", name)] = getattr(args, name)
    run = load_ctc_config(args.config, overrides)
    results = run_finetune_ctc(run, args.upstream, args.output_dir, resume=args.resume, config_path=args.config,
                               push_to_hub=args.push_to_hub, init_from=args.init_from)
    summary = {k: v for k, v in results.items() if k in ("upstream", "subset", "tokenizer", "best_step", "stopped_early", "metrics")
               or k.startswith("best_dev_")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
