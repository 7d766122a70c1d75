#!/usr/bin/env bash
# make demo: the study in miniature (configs/study/demo.yaml), ending in one table per metric.
#   1. synthesise the built-in corpus (LibriSpeech layout, Libri-light-style labeled subsets)
#   2. pretrain the tiny WaveNet autoencoder (VQ), CPC, masked reconstruction and the supervised topline
#      (a frame phone classifier trained with the pool's phone labels) at equal measured FLOPs
#   3. frozen CTC heads on train-10min for each of them and for filterbanks, on characters (CER / WER)
#      and on phones (PER)
#   4. probes and ABX at each representation's default probe point, speaker identification at every
#      probe point, VQ code statistics and pictures, two test utterances resynthesised and converted
#   5. RESULTS/README.md: the tables and the talk's findings checked against them, and
#      RESULTS/report.html: everything in one page, with the figures and audio players
# Every stage is skipped when its result exists and resumed when its checkpoints do, so a killed demo
# continues where it stopped. Knobs (environment): DATA, RUNS, RESULTS, SCALE (multiplies the
# pretraining FLOPs and the CTC step budgets), CONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/builtin}
RUNS=${RUNS:-runs/demo}
RESULTS=${RESULTS:-results}
export TOKENIZERS_PARALLELISM=false
$PY recipes/study.py --config "${CONFIG:-configs/study/demo.yaml}" --scale "${SCALE:-1.0}" --data_dir "$DATA" \
  --output_dir "$RUNS" --results_dir "$RESULTS" --hub_dir "$RUNS/hub"
cat "$RESULTS/README.md"
echo
echo "report (open in a browser): $RESULTS/report.html"
