# The two commands of the README: `make run` (the main job: the comparison on built-in data
# where joint training leaves one modality far below its probe trained alone) and
# `make test` (the test suite). Both set up the environment first.
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
BIN := $(VENV)/bin

.PHONY: setup run test lint bench
setup:
	@bash scripts/setup.sh

RUN_DATA ?= synthetic:preset=competition,n_train=2000
run: setup
	$(BIN)/mmbalance compare --data $(RUN_DATA) --unimodal-reference $(ARGS)

test: setup
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q $(ARGS)

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/step_cost.py
	$(BIN)/python benchmarks/equal_compute.py
	$(BIN)/python benchmarks/adaptivity.py
	$(BIN)/python benchmarks/leverage.py --no-progress
	$(BIN)/python benchmarks/bss_scores.py
	$(BIN)/python benchmarks/rl.py
	$(BIN)/python benchmarks/vector_env.py
	$(BIN)/python benchmarks/dus_rl.py
	$(BIN)/python benchmarks/sweep_throughput.py
	$(BIN)/python benchmarks/update_readme.py
