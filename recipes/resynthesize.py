"""Resynthesis and voice conversion with a WaveNet autoencoder: WAV files to listen to.

    python recipes/resynthesize.py --upstream hub/wavenet_vq --output_dir DIR [--data SPEC] [--split test] \
        [--num_utterances 3] [--target_speakers 2 | --speakers ID ...] [--max_seconds 2.0] [--temperature 1.0]

For each of --num_utterances utterances of --split (a seeded random choice, cut to --max_seconds) it
writes DIR/original/ID.wav, DIR/resynthesized/ID.wav (decoded with the utterance's own speaker
embedding; a speaker never seen in pretraining, as on test, gets the average of the training speakers'
embeddings) and DIR/converted/ID-to-SPEAKER.wav for each target training speaker. All of them are
generated together, sample by sample with the decoder's cached convolutions, behind a progress bar;
DIR/results.json lists the files and the generation speed in samples per second.
"""

import json

from repr_asr.evaluation.analysis_cli import analysis_parser, run_analysis_recipe
from repr_asr.evaluation.resynthesis import resynthesize_utterances


def main(argv=None):
    parser = analysis_parser(__doc__, upstream_help="a save_pretrained folder of a WaveNet autoencoder", split="test", cache=False)
    parser.add_argument("--num_utterances", type=int, default=3)
    parser.add_argument("--speakers", nargs="+", default=None, help="target training speakers (ids of the model's config.speakers)")
    parser.add_argument("--target_speakers", type=int, default=2, help="without --speakers: this many training speakers, spread over the list")
    parser.add_argument("--max_seconds", type=float, default=2.0, help="cut each utterance to this length (generation is sample by sample)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: the most likely sample)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = run_analysis_recipe(args, lambda: resynthesize_utterances(
        args.upstream, args.data, args.output_dir, args.split, args.num_utterances, args.speakers, args.target_speakers,
        args.max_seconds, args.temperature, args.seed, args.device, progress=True))
    print(f"{len(results['files'])} files, {results['generated_samples']} samples generated in {results['generation_seconds']:.1f} s: "
          f"{results['samples_per_second']:.0f} samples/s on {results['device']}")
    print(json.dumps([f["path"] for f in results["files"]], indent=1))
    return results


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
