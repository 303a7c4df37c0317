# The two commands of the README: `make run` (the main job: the comparison on built-in data
# where joint training leaves one modality far below its probe trained alone) and
# `make test` (the test suite). Both set up the environment first.
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
BIN := $(VENV)/bin

.PHONY: setup run test lint bench
# the RL benchmark on the family where a two-phase schedule pays (benchmarks/adaptivity.py)
SHIFTING := --family synthetic:preset=shifting,separation=5..7/3..5,informative=0.6..0.8/1 \
	--centre synthetic:preset=shifting --set env_config.train.epochs=10 \
	--set env_config.train.lr=0.03 --set env_config.train.uni_loss_weights=0.03
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
	$(BIN)/python benchmarks/rl.py --name rl_shifting --env-steps 4096 --algorithms PPO SAC $(SHIFTING)
	$(BIN)/python benchmarks/rl.py --name rl_shifting --env-steps 8192 --algorithms PPO $(SHIFTING)
	$(BIN)/python benchmarks/rl.py --name rl_shifting_4096 --env-steps 4096 --algorithms PPO $(SHIFTING)
	$(BIN)/python benchmarks/vector_env.py
	$(BIN)/python benchmarks/dus_rl.py
	$(BIN)/python benchmarks/sweep_throughput.py
	$(BIN)/python benchmarks/update_readme.py
