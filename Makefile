# One command each on a fresh machine: `make demo`, `make test` (both create .venv themselves).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test demo bench clean

venv: $(STAMP)

# torch is installed first and by name: the CPU wheel lies on this machine's disk, and an
# unpinned resolve would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest

demo: venv
	$(BIN)/movinet demo

bench: venv
	$(BIN)/python benchmarks/model_speed.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
