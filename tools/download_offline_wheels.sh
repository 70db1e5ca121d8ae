#!/usr/bin/env bash
# Run on the CPU machine (it has the network): fill .whl/ (ignored by git)
# with what tools/gpu_check.sh needs on the GPU machine, which has Python
# 3.12, a CUDA torch and no network: mmcv's source (built there with CUDA
# ops) and cp312 wheels of mmengine, mmdet and the packages they need that
# the GPU image lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d .whl \
  mmengine==0.10.7 mmdet==3.3.0 pycocotools==2.0.8 terminaltables==3.1.10 \
  addict==2.4.0 yapf==0.40.1 platformdirs termcolor shapely tomli \
  importlib-metadata zipp
# metadata of the sdist is generated with this interpreter (torch needed)
${MMCV_PY:-.venv/bin/python} -m pip download -q --no-deps --no-binary=:all: \
  --no-build-isolation -d .whl mmcv==2.1.0
ls -l .whl
du -sh .whl
