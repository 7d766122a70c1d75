"""What a VQ upstream's codes are: usage, bitrate, code ↔ phone co-occurrence, and pictures.

    python recipes/codes.py --upstream hub/wavenet_vq --output_dir DIR [--data SPEC] [--split test] \
        [--max_utterances N] [--examples 3]

Writes DIR/results.json: code usage and perplexity, the entropy-based bitrate next to the nominal one
(log2 K bits per latent frame), phone purity and phone / speaker normalised mutual information, run
lengths of repeated codes (segments per second), the code × phone counts and each code's most frequent
phones. Pictures: DIR/code_phone.png (P(phone | code), codes grouped by their phone) and, for the first
--examples utterances, DIR/codes-UTTERANCE.png (codes over the spectrogram with the phone alignment).
"""

import os

from repr_asr.evaluation.analysis_cli import analysis_parser, cache_dir, run_analysis_recipe
from repr_asr.evaluation.code_figures import draw_code_figures
from repr_asr.evaluation.codes import evaluate_codes
from repr_asr.models import load_feature_extractor


def main(argv=None):
    parser = analysis_parser(__doc__, upstream_help="a save_pretrained folder of a WaveNet-AE with a VQ bottleneck", split="test")
    parser.add_argument("--max_utterances", type=int, default=None, help="a seeded random subset of the split")
    parser.add_argument("--examples", type=int, default=3, help="utterances drawn with their codes over the spectrogram")
    args = parser.parse_args(argv)

    def analyse() -> dict:
        results = evaluate_codes(args.upstream, args.data, args.split, args.max_utterances, cache_dir=cache_dir(args),
                                 device=args.device, examples=args.examples)
        sampling_rate = load_feature_extractor(args.upstream).sampling_rate  # the rate the codes were computed at
        results["figures"] = draw_code_figures(results, args.data, args.output_dir, sampling_rate, args.max_utterances)
        return results

    results = run_analysis_recipe(args, analyse)
    m = results["metrics"]
    print(f"{m['codes_used']} of {m['codebook_size']} codes used, perplexity {m['perplexity']:.1f}, "
          f"{m['bitrate']:.0f} bits/s (nominal {m['nominal_bitrate']:.0f}), {m['segments_per_second']:.1f} segments/s")
    if "phone_purity" in m:
        print(f"phone purity {m['phone_purity']:.1f} % (majority phone {m['phone_majority']:.1f} %), phone NMI {m['phone_nmi']:.3f}, "
              f"speaker NMI {m.get('speaker_nmi', float('nan')):.3f}")
    for row in results["top_phones"][:10]:
        print(f"  code {row['code']:>3}: " + ", ".join(f"{p} {100 * share:.0f} %" for p, share in row["phones"]))
    print(f"pictures: {', '.join(os.path.join(args.output_dir, f) for f in results['figures'].values())}")
    return results


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
