# The two commands of the README: `make run` (the main job on the built-in synthetic data)
# and `make test` (the test suite). Both set up the environment first.
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
BIN := $(VENV)/bin

.PHONY: setup run test lint bench
setup:
	@bash scripts/setup.sh

run: setup
	$(BIN)/mmbalance compare $(ARGS)

test: setup
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q $(ARGS)

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/step_cost.py
	$(BIN)/python benchmarks/accuracy.py --no-progress
	$(BIN)/python benchmarks/leverage.py --no-progress
	$(BIN)/python benchmarks/bss_scores.py
	$(BIN)/python benchmarks/rl.py
	$(BIN)/python benchmarks/vector_env.py
	$(BIN)/python benchmarks/dus_rl.py
	$(BIN)/python benchmarks/sweep_throughput.py
	$(BIN)/python benchmarks/update_readme.py
