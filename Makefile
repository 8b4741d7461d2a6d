# One command each on a fresh machine: `make demo`, `make test` (both create .venv themselves).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: venv test demo bench browser clean

venv: $(STAMP)

# torch is installed first and by name: the CPU wheel lies on this machine's disk, and an
# unpinned resolve would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The page test drives Debian's Chromium. Installed here when missing and apt is usable (root);
# otherwise the browser test skips with the reason (and fails under CI=true). Never fails make.
browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser test"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
			>/dev/null; } || echo "could not install chromium: the browser test will skip"; \
	else \
		echo "no $(CHROMIUM) and apt is not usable here: the browser test will skip"; \
	fi

test: venv browser
	$(BIN)/python -m pytest

demo: venv
	$(BIN)/movinet demo

# Each script prints its table and writes benchmarks/results/<name>.json (the README's numbers).
BENCHMARKS := model_speed decode_speed label_speed serve_load quantize train_speed train_quality
bench: venv
	for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
