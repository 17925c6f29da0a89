# Two set-up commands: `make test` and `make train ARGS="..."`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/activate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/activate

.PHONY: test test-slow lint train bench clean
test: $(BIN)/activate
	$(BIN)/python -m pytest -q

lint: $(BIN)/activate
	$(BIN)/ruff check lab tests

test-slow: $(BIN)/activate
	$(BIN)/python -m pytest -q -m slow

train: $(BIN)/activate
	$(BIN)/python -m lab.train $(ARGS)

bench: $(BIN)/activate
	$(BIN)/python -m lab.bench $(ARGS)

clean:
	rm -rf outputs multirun/2* .pytest_cache
