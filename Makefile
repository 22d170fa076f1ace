# corranalysis — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/fashion_cnn4.yaml

.PHONY: demo notebooks test lint venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	# torch first, so the CPU build on this machine is used (no CUDA wheels pulled in)
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[dev]'
	# the notebooks' kernel, inside the venv (a user's own global kernels are left alone)
	$(BIN)/python -m ipykernel install --sys-prefix --name corranalysis --display-name "Python (corranalysis)" >/dev/null
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m ruff check corranalysis tests benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: $(STAMP)
	$(BIN)/python -m ruff check corranalysis tests benchmarks

demo: $(STAMP)
	CONFIG=$(CONFIG) bash scripts/demo.sh
	$(MAKE) --no-print-directory notebooks CONFIG=$(CONFIG)

# the notebooks run on the finished study and published with their outputs:
# reports/notebooks/index.html (the committed notebooks stay without outputs; `make test`
# runs them on the quick study and publishes nothing)
notebooks: $(STAMP)
	$(BIN)/python scripts/publish_notebooks.py --config $(CONFIG) --out reports/notebooks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_spectra.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
