# `make demo` and `make test` set everything up on a fresh machine (a .venv with the CPU build of torch
# where one is at hand) and then run; the set-up step is skipped once done.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV)
	touch $@

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check rag_prompts tests scripts
	$(VENV)/bin/mypy rag_prompts scripts
	$(VENV)/bin/lint-imports --no-cache

bench: setup
	$(PY) scripts/bench_pipeline.py

clean:
	rm -rf $(VENV) .rag_prompts .pytest_cache .mypy_cache .ruff_cache
