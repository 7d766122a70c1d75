"""Gather downstream runs into one comparison: comparison.md, comparison.csv, comparison.png.

    python recipes/compare.py --runs runs/ctc/* --output_dir results

One row per setting (everything results.json says was run except the seed and the subset); runs that
differ only in their seed share a cell, shown as mean ± std (n). A row is named as the study names the
representation (cpc, hub-cpc), with its probe point, frozen or fine-tuned, and in words the settings that
tell it apart from the other rows of that name (corpus 4 h, 3e13 FLOPs). See repr_asr/evaluation/report.py.
"""

import argparse

from repr_asr.evaluation.report import load_runs, markdown_tables, write_comparison


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="run folders holding results.json (searched recursively)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default="test", help="evaluation split shown in the tables (default: test)")
    args = parser.parse_args()
    runs = load_runs(args.runs)
    paths = write_comparison(runs, args.output_dir, args.split)
    print(markdown_tables(runs, args.split))
    print("written: " + ", ".join(paths.values()))


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)  # a user-input error (repr_asr.errors.USER_ERRORS): one line and exit status 1, no traceback
