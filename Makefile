# Two commands do all the set-up on a fresh machine with Python >= 3.10:
#   make book   executes every chapter and builds the website (_build/html),
#               then the Chinese edition from the same outputs (_build/html/zh)
#   make test   runs every test: unit, integration, notebooks (nbval), site, PDFs
#   make pdf    cnnlearn-en.pdf and cnnlearn-zh.pdf in _build/pdf (XeLaTeX: see
#               the README for its Debian packages)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The original data files, where this repository's CI keeps them. Elsewhere the
# loaders download them through Keras (or set CNNLEARN_DATA_DIR yourself).
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/mnist),)
export CNNLEARN_DATA_DIR ?= $(SHARED_DATA)
endif
PYTEST_NB := --nbval-lax --nbval-sanitize-with .nbval-sanitize.cfg --nbval-cell-timeout=1800

.PHONY: install book pdf chapters test test-fast lint benchmarks clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

book: install
	$(BIN)/jupyter-book build . --all -W -n --keep-going
	$(BIN)/cnnlearn book zh-site
	@echo "The website is in $(CURDIR)/_build/html/index.html"
	@echo "中文版: $(CURDIR)/_build/html/zh/index.html"

# From the chapters `make book` executed (_build/jupyter_execute), else from the
# committed notebooks' outputs: nothing is executed here.
pdf: install
	$(BIN)/cnnlearn book pdf en zh --output _build/pdf

# Authors: re-execute every chapter in place, then commit it with its outputs.
chapters: install
	cd book && for nb in *.ipynb; do \
	  ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1800 "$$nb" || exit 1; done

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest book tests $(PYTEST_NB)

test-fast: install
	$(BIN)/python -m pytest tests -m "not slow"

benchmarks: install
	$(BIN)/python benchmarks/train_mnist.py
	$(BIN)/python benchmarks/conv_ops.py
	$(BIN)/python benchmarks/model_throughput.py
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/distributed.py
	$(BIN)/python benchmarks/model_compression.py
	$(BIN)/python benchmarks/runtimes.py
	$(BIN)/python benchmarks/tuning.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/faults.py
	$(BIN)/python benchmarks/applications.py
	$(BIN)/python benchmarks/backends.py
	$(BIN)/python benchmarks/best_cnn.py
	$(BIN)/python benchmarks/speedrun.py
	@echo "benchmarks/gpu.py runs on a GPU machine: see its docstring"

clean:
	rm -rf _build book/runs runs .pytest_cache
