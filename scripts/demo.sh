#!/usr/bin/env bash
# make demo: build the built-in corpus and print its statistics (extended as the models land).
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/builtin}
$PY recipes/make_corpus.py --output_dir "$DATA" --hours "${DEMO_HOURS:-1.0}" --num_workers "${JOBS:-2}"
