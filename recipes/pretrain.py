"""Pretrain an upstream (wavenet_ae, cpc, masked_recon) with the shared training loop.

    accelerate launch recipes/pretrain.py --config configs/pretrain/NAME.yaml --output_dir DIR \
        [--data builtin:data/builtin | --data hf:NAME_OR_PATH [--streaming]] [--max_steps N --save_steps N --seed S \
        --resume] [--push_to_hub REPO] [--section.key value ...]

Also runs as plain ``python recipes/pretrain.py ...`` (one process). Writes DIR/final/ (save_pretrained
+ feature extractor + model card), DIR/checkpoints/, DIR/logs/, DIR/metrics.jsonl and DIR/config.yaml;
--push_to_hub REPO uploads DIR/final/ to that Hugging Face Hub repo at the end. --streaming reads an hf: corpus
as a stream (repr_asr.data.streaming: each process and worker reads its own shards; nothing is loaded up front).
"""

import json

from repr_asr.training import load_config, parse_recipe_args, run_pretraining


def extra_arguments(parser):
    parser.add_argument("--streaming", action="store_true", help="stream an hf: corpus (shortcut for --data.streaming true)")
    parser.add_argument("--push_to_hub", metavar="REPO", help="upload DIR/final/ to this Hugging Face Hub repo at the end")


def main(argv=None):
    args, overrides = parse_recipe_args(argv, description=__doc__.splitlines()[0], extra=extra_arguments)
    if args.streaming:
        overrides[("data", "streaming")] = True
    run = load_config(args.config, overrides)
    metrics = run_pretraining(run, args.output_dir, resume=args.resume, config_path=args.config,
                              push_to_hub=args.push_to_hub)
    from accelerate import PartialState  # initialised by the Trainer by now

    if PartialState().is_main_process:
        print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
