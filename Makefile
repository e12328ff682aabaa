# The two commands a newcomer needs: `make demo` and `make test`. Each creates or refreshes .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test soak lint typecheck bench bench-check clean

$(STAMP): pyproject.toml setup.py $(wildcard native/*.c native/*.h)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,silero]'
	$(BIN)/python -m pip install --quiet --no-deps 'silero-vad>=5.1'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mediabot demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# The long reliability runs (tests marked soak): full-scale load, memory across many calls, a call past WAV's 4 GB.
soak: $(STAMP)
	$(BIN)/pytest -m soak -v

# Benchmarks: `make bench` runs them all (JSON and PNG in benchmarks/results/); `make bench-check` runs the quick
# variants and fails when a ratio regressed beyond its tolerance in benchmarks/baseline.json.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-check: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick --check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info mediabot/audio/*.so
