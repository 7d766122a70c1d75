#!/usr/bin/env bash
# make demo: the whole pipeline at tiny scale on the built-in corpus, ending in a WER/CER table.
#   1. synthesise the built-in corpus (LibriSpeech layout, Libri-light-style labeled subsets)
#   2. pretrain the tiny WaveNet autoencoder (VQ), CPC and masked reconstruction at equal compute
#   3. train frozen CTC heads on train-10min and train-1h for each of them and for filterbanks
#   4. write results/comparison.{md,csv,png} and print the table
# Every stage is skipped when its output exists and resumed when its checkpoints do, so a killed demo
# continues where it stopped. Knobs (environment): DATA, DEMO_HOURS, RUNS, RESULTS, SUBSETS, the
# pretraining budget PRETRAIN_FLOPS (per upstream) and CTC_STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}
DATA=${DATA:-data/builtin}
DEMO_HOURS=${DEMO_HOURS:-2.0}
RUNS=${RUNS:-runs/demo}
RESULTS=${RESULTS:-results}
SUBSETS=${SUBSETS:-"10min 1h"}
export TOKENIZERS_PARALLELISM=false
# accelerate launch gives each process one CPU thread unless told otherwise.
launch() { "$ACCELERATE" launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  --num_cpu_threads_per_process "$(nproc)" "$@"; }
mkdir -p "$RUNS"
started=$(date +%s)
stamp() { echo "[demo $(( $(date +%s) - started ))s] $*"; }

stamp "1/4 built-in corpus: $DATA ($DEMO_HOURS h)"
$PY recipes/make_corpus.py --output_dir "$DATA" --hours "$DEMO_HOURS" --seed 0 --num_workers "${JOBS:-2}"

# Equal pretraining compute, measured: each run counts one training step's FLOPs on a real batch
# (forward + backward, FlopCounterMode) and takes max_steps = PRETRAIN_FLOPS / FLOPs per step; the
# counts are in each run's results.json and model card. 12.6 TFLOP was ~51 WaveNet-AE steps.
PRETRAIN_FLOPS=${PRETRAIN_FLOPS:-12.6e12}
for name in wavenet_vq_tiny cpc_tiny masked_recon_tiny; do
  out="$RUNS/pretrain/$name"
  if [ -f "$out/final/config.json" ]; then stamp "2/4 pretrain $name: done already ($out/final)"; continue; fi
  resume=(); [ -d "$out/checkpoints" ] && resume=(--resume)
  stamp "2/4 pretrain $name ($PRETRAIN_FLOPS FLOPs) -> $out"
  launch recipes/pretrain.py --config "configs/pretrain/$name.yaml" --data "builtin:$DATA" \
    --output_dir "$out" --training.flops_budget "$PRETRAIN_FLOPS" "${resume[@]}" > "$RUNS/pretrain-$name.log" 2>&1 \
    || { tail -n 30 "$RUNS/pretrain-$name.log"; exit 1; }
  stamp "   $($PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['steps']} steps x {r['flops_per_step']:.3g} FLOPs = {r['total_flops']:.3g}\")" "$out/results.json")"
done

for upstream in fbank wavenet_vq_tiny cpc_tiny masked_recon_tiny; do
  path=$upstream; [ "$upstream" != fbank ] && path="$RUNS/pretrain/$upstream/final"
  for subset in $SUBSETS; do
    out="$RUNS/ctc/$upstream-$subset"
    if [ -f "$out/results.json" ]; then stamp "3/4 CTC $upstream on train-$subset: done already"; continue; fi
    resume=(); [ -d "$out/checkpoints" ] && resume=(--resume)
    [ -n "${CTC_STEPS:-}" ] && resume+=(--max_steps "$CTC_STEPS")
    stamp "3/4 CTC (frozen) $upstream on train-$subset -> $out"
    launch recipes/finetune_ctc.py --config configs/ctc/frozen_tiny.yaml --upstream "$path" --subset "$subset" \
      --data "builtin:$DATA" --output_dir "$out" "${resume[@]}" > "$RUNS/ctc-$upstream-$subset.log" 2>&1 \
      || { tail -n 30 "$RUNS/ctc-$upstream-$subset.log"; exit 1; }
  done
done

stamp "4/4 comparison -> $RESULTS"
$PY recipes/compare.py --runs "$RUNS/ctc" --output_dir "$RESULTS"
stamp "finished"
