# `make demo` and `make test` work on a fresh clone: they create .venv and
# install the pinned stack first. mmcv 2.1.0 has no wheel for torch 2.13, so
# it is built from source once (~13 min on 2 cores) and cached in
# $(WHEEL_CACHE); later installs reuse the wheel (< 2 min).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
WHEEL_CACHE ?= $(HOME)/.cache/mmdet_samdetr/wheels
MMCV_WHEEL := $(WHEEL_CACHE)/mmcv-2.1.0-cp311-cp311-linux_x86_64.whl
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
DEMO_DIR ?= work_dirs/demo

.PHONY: install demo test benchmark clean-venv

install: $(STAMP)

$(STAMP): setup.cfg $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) "setuptools<81" wheel ninja
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install -q -c $(CONSTRAINTS) "setuptools<81"
	@if [ ! -f $(MMCV_WHEEL) ]; then \
	  echo "Building mmcv 2.1.0 with ops (about 13 minutes on 2 cores, once; cached in $(WHEEL_CACHE))"; \
	  tmp=$$(mktemp -d) && \
	  MMCV_WITH_OPS=1 MAX_JOBS=$$(nproc) $(PIP) wheel -q --no-build-isolation --no-deps -w $$tmp mmcv==2.1.0 && \
	  mkdir -p $(WHEEL_CACHE) && mv $$tmp/mmcv-2.1.0-*.whl $(MMCV_WHEEL) && rm -rf $$tmp; \
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

clean-venv:
	rm -rf $(VENV)
