# echo-run: `make run` and `make test` create .venv and install the project on first use.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
SCALE ?= small

.PHONY: help install run test test-fast bench advise figures clean-runs

help:  ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*?## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort | awk -F'\t' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	# torch and torchvision first, pinned to the pair this machine holds; other machines may use any
	# pair pyproject.toml admits.
	.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1" || .venv/bin/pip install -q torch torchvision
	.venv/bin/pip install -q -e ".[dev]"
	touch $(VENV_STAMP)

install: $(VENV_STAMP)  ## create .venv and install echo-run with its test tools

run: $(VENV_STAMP)  ## the embedded default: digits, small CNN, cosine echoing
	.venv/bin/echo-run $(ARGS)

test: $(VENV_STAMP)  ## the whole test suite (unit, CLI end to end, torchrun with 2 processes)
	.venv/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)
