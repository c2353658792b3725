# make demo: the ETTh1 story (teacher, MLP, distilled MLP) with a results table.
# make test: the test suite. Both create .venv and install the package when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test clean

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test,plots,tensorboard]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m timedistill_jax.demo --workdir runs/demo --compilation_cache runs/.xla_cache

# One worker process a core (at most 4), each test file on one worker: module fixtures stay shared.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

clean:
	rm -rf runs .pytest_cache
