#!/usr/bin/env bash
# Download what installing mmdet_samdetr needs, for a machine without network
# that already has torch (the CPU or CUDA build that suits it).
#
# On a machine with network, from the repository root:
#
#   tools/download_offline_wheels.sh [DIR [PACKAGE ...]]
#
# DIR (default .whl, ignored by git) receives binary wheels of PACKAGE ...
# (default: mmengine, mmdet, pycocotools, scipy, numpy, setuptools<81) and of
# everything they depend on, for the offline machine's Python and platform:
# PYTHON_VERSION (default 3.11) and PLATFORMS (default: manylinux x86_64
# tags). NO_DEPS=1 downloads the listed packages only (for a machine that has
# the rest). DIR also receives mmcv 2.1.0's source: mmcv has no wheel for
# recent torch and is built where it runs, with the CUDA ops of that
# machine's GPU. Reading mmcv's source metadata imports torch: MMCV_PY
# (default .venv/bin/python, else python3) must have it.
#
# Carry DIR and a checkout of this repository over; there, with torch
# installed:
#
#   pip install --no-index --find-links DIR mmengine==0.10.7 mmdet==3.3.0 \
#       pycocotools scipy "setuptools<81"
#   MMCV_WITH_OPS=1 pip wheel --no-deps --no-build-isolation --no-index \
#       -w DIR DIR/mmcv-2.1.0.tar.gz    # FORCE_CUDA=1 for the CUDA ops
#   pip install --no-index --no-deps DIR/mmcv-2.1.0-*.whl
#   pip install --no-index --no-deps --no-build-isolation -e .
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.whl}
shift || true
if [ $# -eq 0 ]; then
  set -- mmengine==0.10.7 mmdet==3.3.0 "pycocotools>=2.0.8" scipy numpy \
    "setuptools<81"
fi
PY=${PYTHON:-python3}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
PLATFORMS=${PLATFORMS:-"manylinux_2_28_x86_64 manylinux_2_27_x86_64 \
manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64"}
if [ -z "${MMCV_PY:-}" ]; then
  if [ -x .venv/bin/python ]; then MMCV_PY=.venv/bin/python; else MMCV_PY=python3; fi
fi
deps=()
if [ "${NO_DEPS:-0}" = 1 ]; then deps=(--no-deps); fi
platforms=()
for p in $PLATFORMS; do
  platforms+=(--platform "$p")
done
mkdir -p "$DIR"
$PY -m pip download -q "${deps[@]}" --only-binary=:all: \
  --python-version "$PYTHON_VERSION" --implementation cp "${platforms[@]}" \
  -d "$DIR" "$@"
$MMCV_PY -m pip download -q --no-deps --no-binary=:all: \
  --no-build-isolation -d "$DIR" mmcv==2.1.0
ls -l "$DIR"
du -sh "$DIR"
