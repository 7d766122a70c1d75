"""One analysis of one representation, as the study runs it (``recipes/study.py`` launches several at once).

    python recipes/study_analysis.py --stage probes --upstream hub/cpc --data builtin:data/study \
        --section '{"split": "test", ...}' --cache_dir DIR --folder DIR --output FILE [--probe_points '["enc"]']

Runs ``repr_asr.evaluation.analysis.run_analysis`` (probes, ABX, VQ codes, resynthesis, or a downstream task
the study runs as an analysis) with the study config's section for it, and writes what it returns to
``FILE`` (JSON; ``null`` when the analysis does not apply). Figures and WAVs go to ``--folder``.
"""

import argparse
import json
import logging
from pathlib import Path

from repr_asr.evaluation.analysis import ANALYSES, run_analysis


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, choices=ANALYSES)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--section", required=True, type=json.loads, help="the study config's section for the stage (JSON)")
    parser.add_argument("--probe_points", type=json.loads, default=None, help="a JSON list (default: every probe point)")
    parser.add_argument("--cache_dir", required=True, help="feature cache")
    parser.add_argument("--folder", required=True, help="where figures and WAVs go")
    parser.add_argument("--output", required=True, help="the JSON file the results go to")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = run_analysis(args.stage, args.upstream, args.data, args.section, args.probe_points, args.cache_dir, args.folder)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results))


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)
