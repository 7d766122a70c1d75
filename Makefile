# repr-asr: the README's commands. `make demo` and `make test` do all the set-up themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch is pinned to the build this project is tested with; torchaudio 2.11 needs it.
TORCH_PINS := torch==2.14.1 torchaudio==2.11.0
DATA ?= data/builtin
HOURS ?= 2.0
# `make corpus` builds the demo's corpus (configs/study/demo.yaml: 2 h, seed 2)
SEED ?= 2

.PHONY: install system-deps demo study test bench corpus clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[test,lm]'
	touch $@

install: system-deps $(VENV)/.installed

# The built-in corpus synthesises speech with Festival and espeak-ng (Debian packages): installed when
# run as root, else the apt-get line is printed and the rest goes on (those tests are then skipped).
system-deps:
	@bash scripts/install_system_deps.sh

corpus: install
	$(PY) recipes/make_corpus.py --output_dir $(DATA) --hours $(HOURS) --seed $(SEED)

# Knobs: DATA, RUNS, RESULTS, SCALE, CONFIG (see scripts/demo.sh).
demo: install
	bash scripts/demo.sh

# The study (configs/study/default.yaml): 7 h 44 min on 2 idle cores at STUDY_SCALE=1 (docs/study.md); resumable stage by
# stage. Results go to docs/study/ (committed), the pretrained upstreams to hub/.
STUDY_SCALE ?= 1.0
study: install
	$(PY) recipes/study.py --config configs/study/default.yaml --scale $(STUDY_SCALE)

# -rs lists each skipped test with its reason (e.g. the speech synthesisers missing for a non-root user).
test: install
	$(PY) -m pytest tests -rs --durations=15

# The speed benchmarks (docs/performance.md); tests/test_bench.py runs each at its --quick size. The ABX row
# also times fastabx when BENCH_FASTABX_PYTHON names a Python >= 3.12 that has it (its own venv, e.g.
# python3.12 -m venv /work/venv312 && /work/venv312/bin/pip install fastabx); it says "skipped" otherwise.
bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) runs results bench/results
