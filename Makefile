# `make demo` and `make test` work on a fresh clone: they create .venv and
# install the pinned stack first. mmcv has no wheel for these torch builds,
# so it is built from source once (~13 min on 2 cores) and cached in
# $(WHEEL_CACHE); later installs reuse the wheel (< 2 min).
#
# STACK=<name> installs and tests another stack instead of CI's: the
# constraints file requirements/stacks/<name>.txt names its Python (a line
# `# python: X.Y`) and its pins; its venv is .venv-<name>.
#   make test STACK=py312     Python 3.12, CI's torch
#   make test STACK=oldest    the oldest declared Python / torch / mmengine
#   make test-stacks          both
SHELL := /bin/bash
WHEEL_CACHE ?= $(HOME)/.cache/mmdet_samdetr/wheels
STACK ?=
ifeq ($(STACK),)
PYTHON ?= python3.11
VENV ?= .venv
CONSTRAINTS := requirements/constraints.txt
MMCV_CACHE := $(WHEEL_CACHE)
else
CONSTRAINTS := requirements/stacks/$(STACK).txt
STACK_PY := $(shell sed -n 's/^# python: *//p' $(CONSTRAINTS))
# python3.X on PATH, else pyenv's newest 3.X (pyenv's shims run only the
# selected version)
PYTHON ?= $(shell python$(STACK_PY) -c '' 2>/dev/null && echo python$(STACK_PY) || \
  ls -d $$(pyenv root 2>/dev/null)/versions/$(STACK_PY).*/bin/python$(STACK_PY) 2>/dev/null | sort -V | tail -1)
ifeq ($(PYTHON),)
$(error STACK=$(STACK) needs Python $(STACK_PY): put python$(STACK_PY) on PATH (or in pyenv), or set PYTHON=)
endif
VENV := .venv-$(STACK)
MMCV_CACHE := $(WHEEL_CACHE)/$(STACK)
endif
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# the pinned torch and mmcv of the constraints file
TORCH_PIN := $(shell grep -hE '^torch==' $(CONSTRAINTS) requirements/constraints.txt | head -1)
MMCV_PIN := $(shell grep -hE '^mmcv==' $(CONSTRAINTS) requirements/constraints.txt | head -1)
MMCV_DIST := $(firstword $(subst ==, ,$(MMCV_PIN)))
MMCV_VERSION := $(lastword $(subst ==, ,$(MMCV_PIN)))
PYTAG := $(shell $(PYTHON) -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null)
MMCV_WHEEL := $(MMCV_CACHE)/$(subst -,_,$(MMCV_DIST))-$(MMCV_VERSION)-$(PYTAG)-$(PYTAG)-linux_x86_64.whl
STAMP := $(VENV)/.installed
DEMO_DIR ?= work_dirs/demo

.PHONY: install demo test test-stacks benchmark clean-venv

install: $(STAMP)

$(STAMP): setup.cfg $(CONSTRAINTS) requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) "setuptools<81" wheel ninja
	$(PIP) install -q -c $(CONSTRAINTS) "$(TORCH_PIN)"
	$(PIP) install -q -c $(CONSTRAINTS) "setuptools<81"
	@if [ ! -f $(MMCV_WHEEL) ]; then \
	  echo "Building $(MMCV_PIN) with ops for $(TORCH_PIN) (about 13 minutes on 2 cores, once; cached in $(MMCV_CACHE))"; \
	  tmp=$$(mktemp -d) && \
	  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$$(nproc) $(PIP) wheel -q --no-build-isolation --no-deps -w $$tmp "$(MMCV_PIN)" && \
	  mkdir -p $(MMCV_CACHE) && mv $$tmp/*.whl $(MMCV_WHEEL) && rm -rf $$tmp; \
	fi
	$(PIP) install -q -c $(CONSTRAINTS) $(MMCV_WHEEL)
	$(PIP) install -q -c $(CONSTRAINTS) --no-build-isolation -e ".[tests,dev,docs]"
	touch $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) demo/demo.py --work-dir $(DEMO_DIR)

benchmark: $(STAMP)
	$(PY) benchmarks/benchmark.py

test-stacks:
	$(MAKE) test STACK=py312
	$(MAKE) test STACK=oldest

clean-venv:
	rm -rf $(VENV)
