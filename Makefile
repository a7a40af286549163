# neurodeploy's single entry point. `make demo` and `make test` work from a fresh clone:
# they create .venv with Python 3.10 (required by lava-nc 0.10.0) on first use.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PYTHON310

.PHONY: help venv demo test test-fast bench clean

help:
	@echo "make demo   set up .venv if needed, run the whole pipeline on the shipped CNN (neurodeploy demo)"
	@echo "make test   set up .venv if needed, run the test suite"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make venv   only create .venv (Python 3.10) and install neurodeploy[lava,dev] into it"
	@echo "make clean  remove build outputs and demo-out/ (keeps .venv)"

venv: $(STAMP)

# Re-install when pyproject.toml changes; the stamp is written only after a successful install.
$(STAMP): pyproject.toml
	@python310="$$(scripts/find-python310.sh)" || exit 1; \
	 if [ ! -x $(PY) ]; then \
	     echo "creating $(VENV) with $$python310"; \
	     "$$python310" -m venv $(VENV) || exit 1; \
	 fi
	@echo "installing neurodeploy[lava,dev] into $(VENV) (first time: ~3 GB of torch wheels from PyPI)"
	$(PY) -m pip install --disable-pip-version-check -q -e '.[lava,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/neurodeploy demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not lava"

bench: $(STAMP)
	$(PY) bench/bench_hw_sim.py --json bench/results/hw_sim.json

clean:
	rm -rf build dist demo-out .pytest_cache
