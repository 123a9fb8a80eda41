# Set-up and everyday commands. `make demo` and `make test` create .venv when it is missing.
# GPU users: make TORCH="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu126" ...
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.fral-installed

.PHONY: install demo test docs notebooks wheel-check lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-nodeps.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Install torch first and pin it, so that no later requirement swaps it for a CUDA build.
	$(PIP) install --disable-pip-version-check -q $(TORCH_INDEX) "$(TORCH)" numpy
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(PIP) install --disable-pip-version-check -q -c $(VENV)/constraints.txt -e ".[dev,plot,docs]"
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

# The tests include the strict docs build (tests/test_docs.py): a broken link, nav entry or
# API reference fails them, and every code block of the README and the docs runs.
test: lint
	$(PY) -m pytest -q

# The notebooks under examples/, executed into build/notebooks/ (only those changed since),
# whose outputs the docs show; CI does not run this (minutes per notebook).
notebooks: $(STAMP)
	$(PY) scripts/execute_notebooks.py

# The documentation site, into site/ (open site/index.html; offline).
docs: notebooks
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The wheel as a user gets it: built here, installed into a fresh venv with only $(TORCH) and
# fral's declared dependencies, then `fral demo --tiny` and the README's quick start, offline.
wheel-check: $(STAMP)
	bash scripts/check_wheel.sh $(PY) "$(TORCH)" "$(TORCH_INDEX)"

bench: $(STAMP)
	$(PY) benchmarks/bench_pgd.py
	$(PY) benchmarks/bench_scoring.py
	$(PY) benchmarks/bench_selection.py

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache .ruff_cache
