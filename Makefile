# Two entry points for a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: setup demo ablation test lint report clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt --editable ".[dev]"
	touch $@

demo: setup  ## render the synthetic dataset, run the whole workflow on it, write the HTML report
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html

ablation: setup  ## the demo plus SSLProfiler's ablation variants (config/ablation.yaml), and the report
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml config/ablation.yaml
	$(BIN)/snakemake --report results/report.html --configfile config/config.yaml config/ablation.yaml

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/snakefmt --check . \
	  && $(BIN)/snakemake --lint

test: lint  ## linters, then every test that needs no GPU
	$(BIN)/pytest -m "not gpu" --durations=15

clean:
	rm -rf results logs benchmarks resources/synthetic .snakemake
