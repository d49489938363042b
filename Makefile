# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BUILD  := build
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

.PHONY: install demo test test-fast bench bench-quick bench-venv docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Run the quickstart offline against the built-in exchange simulator; leave the executed
# notebook and an HTML copy under build/.
demo: install
	mkdir -p $(BUILD)
	rm -rf $(BUILD)/lake
	CRYPTOLAKE_ROOT=$(abspath $(BUILD))/lake $(BIN)/jupyter nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout=300 --output-dir $(BUILD) notebooks/quickstart.ipynb
	$(BIN)/jupyter nbconvert --to html --output-dir $(BUILD) $(BUILD)/quickstart.ipynb
	$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=300 --output-dir $(BUILD) \
		notebooks/analytics.ipynb
	$(BIN)/jupyter nbconvert --to html --output-dir $(BUILD) $(BUILD)/analytics.ipynb
	@echo "demo: executed notebooks and HTML in $(BUILD)/ (quickstart, analytics)"

# The whole suite, notebooks included (nbval runs them in this virtual environment).
test: install
	CRYPTOLAKE_ROOT=$$(mktemp -d)/lake $(BIN)/python -m pytest tests notebooks $(NBVAL) -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest tests -x -q -m "not slow"

# ArcticDB (a peer in the benchmarks) needs pandas<3: its own venv in build/venv-arctic. If it cannot
# be made (no package index), the benchmark still runs and its report says why the peer is missing.
bench-venv: install
	$(BIN)/python -m benchmarks.peers.arctic || echo "bench-venv: ArcticDB venv unavailable; the report will say why"

bench: bench-venv
	$(BIN)/python -m benchmarks.run --full
	$(BIN)/python -m benchmarks.burst
	$(BIN)/python -m benchmarks.helpers_bench --full

bench-quick: bench-venv
	$(BIN)/python -m benchmarks.run --quick
	$(BIN)/python -m benchmarks.helpers_bench --quick

# Regenerate the reference pages from the code (tests fail when a committed page is stale).
docs: install
	$(BIN)/python -m cryptolake_nb.tables.doc > docs/tables.md
	$(BIN)/python -m cryptolake_nb.config_doc > docs/configuration.md
	$(BIN)/python tests/test_capture_channels.py

clean:
	rm -rf $(BUILD) $(VENV) .pytest_cache
