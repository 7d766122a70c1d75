#!/usr/bin/env bash
# The GPU check, in one go (under 8 minutes on one GPU): bench/gpu.py writes bench/results/gpu.json
# (or $OUT/gpu.json when OUT is set): the bf16 matmul peak, the paper-scale WaveNet-AE / CPC /
# masked-reconstruction training steps in bf16 autocast (and the WaveNet-AE under torch.compile),
# feature extraction against a random wav2vec2-base, and CTC decoding, each over the peak.
# Needs PyTorch with CUDA, torchaudio, transformers, accelerate; the project's other imports
# (sentencepiece, soundfile, jiwer, datasets, ...) can travel as wheels in .whl/, installed here first:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl NAME==VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
timeout 470 python3 bench/gpu.py --output "${OUT:-bench/results}/gpu.json"
