# Set-up and everyday commands. `make demo` and `make test` create .venv when it is missing.
# GPU users: make TORCH="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu126" ...
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.fral-installed

.PHONY: install demo test wheel-check lint format bench notebooks clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-nodeps.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Install torch first and pin it, so that no later requirement swaps it for a CUDA build.
	$(PIP) install --disable-pip-version-check -q $(TORCH_INDEX) "$(TORCH)" numpy
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(PIP) install --disable-pip-version-check -q -c $(VENV)/constraints.txt -e ".[dev,plot]"
	# torchattacks without its dependencies: see requirements-nodeps.txt (fral's [attacks]).
	$(PIP) install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fral demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest -q

# The wheel as a user gets it: built here, installed into a fresh venv with only $(TORCH) and
# fral's declared dependencies, then `fral demo --tiny` and the README's quick start, offline.
wheel-check: $(STAMP)
	bash scripts/check_wheel.sh $(PY) "$(TORCH)" "$(TORCH_INDEX)"

bench: $(STAMP)
	$(PY) benchmarks/bench_pgd.py
	$(PY) benchmarks/bench_scoring.py
	$(PY) benchmarks/bench_selection.py

# Execute every notebook under examples/ at FRAL_EXAMPLE_SIZE (full: minutes each; ci: seconds,
# as the tests run them). The executed copies, outputs included, go to examples/runs/ (git-ignored).
FRAL_EXAMPLE_SIZE ?= full
notebooks: $(STAMP)
	mkdir -p examples/runs
	for notebook in examples/*.ipynb; do \
		FRAL_EXAMPLE_SIZE=$(FRAL_EXAMPLE_SIZE) $(VENV)/bin/jupyter-execute --timeout=3600 \
			--output='runs/{notebook_name}' "$$notebook" || exit 1; \
	done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
