"""One self-contained report.html from any set of run folders (CTC, probes, ABX, pretraining, codes, audio).

    python recipes/report.py RUN_DIR [RUN_DIR ...] [--output report.html] [--title TEXT] [--split test]

Every results.json in or below the folders is shown by its task: CER / PER / WER per labeled subset (seeds
pooled as mean ± std; rows named as the study names them), probe accuracy per probe point as a table and,
where it shows more, a figure, ABX within and across speakers, pretraining steps and FLOPs, VQ code statistics with the pictures of recipes/codes.py, and
audio players for recipes/resynthesize.py's WAVs. Images and audio are embedded: the file stands alone.
Blank cells were not measured. See repr_asr/evaluation/html_report.py.
"""

import argparse
import logging

from repr_asr.evaluation.html_report import write_html_report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (searched recursively for results.json)")
    parser.add_argument("--output", default="report.html")
    parser.add_argument("--title", default="repr-asr report")
    parser.add_argument("--split", default="test", help="evaluation split of the CTC tables (default: test)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    path = write_html_report(args.runs, args.output, args.title, args.split)
    print(f"report: {path}")
    return path


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)
