#!/usr/bin/env bash
# GPU checks on a machine with a CUDA torch and no network, from the
# repository root, with .whl/ carried over, filled on a machine with network
# by (here for Python 3.12)
#
#   PYTHON_VERSION=3.12 NO_DEPS=1 tools/download_offline_wheels.sh .whl \
#     mmengine==0.10.7 mmdet==3.3.0 pycocotools==2.0.8 terminaltables==3.1.10 \
#     addict==2.4.0 yapf==0.40.1 platformdirs termcolor shapely tomli \
#     importlib-metadata zipp
#
# (the packages such a CUDA image may lack; the package itself is used from
# the checkout, through PYTHONPATH). Then:
#
#   bash benchmarks/gpu_check.sh build   # mmcv with CUDA ops for this GPU
#   bash benchmarks/gpu_check.sh test    # tests/test_cuda.py + the suite
#   bash benchmarks/gpu_check.sh bench   # our benchmark and mmdet's (CUDA)
#   bash benchmarks/gpu_check.sh all     # the three in turn
#
# Each step writes its log under $OUT (or ./gpu_out). The build puts the mmcv
# wheel in .whl/built/, which later runs on the same machine reuse.
set -uo pipefail
cd "$(dirname "$0")/.."
step=${1:-all}
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT" .whl/built
SITE=/tmp/samdetr_site
PY=python3

install_deps() {
  shopt -s nullglob
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade \
    --target "$SITE" .whl/*.whl .whl/built/*.whl 2>&1 | tail -3
  export PYTHONPATH=$SITE:$PWD
}

build() {
  if ls .whl/built/mmcv-*.whl >/dev/null 2>&1; then
    echo "mmcv wheel already built: $(ls .whl/built)"; return 0
  fi
  # only this GPU's architecture (e.g. 9.0 for H100/H200)
  arch=$($PY -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
  src=/tmp/mmcv_src
  rm -rf $src && mkdir -p $src && tar xzf .whl/mmcv-2.1.0.tar.gz -C $src
  ( cd $src/mmcv-2.1.0 && \
    TORCH_CUDA_ARCH_LIST=$arch MMCV_WITH_OPS=1 FORCE_CUDA=1 \
    MAX_JOBS=$(nproc) $PY -m pip wheel -q --no-deps --no-build-isolation \
      --no-index -w "$OLDPWD/.whl/built" . ) 2>&1 | tail -20
}

tests() {
  install_deps
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  $PY -c 'import torch, mmcv, mmdet; from mmcv.ops import roi_align; print(torch.__version__, torch.version.cuda, mmcv.__version__, mmdet.__version__)'
  $PY -m pytest -q tests/test_cuda.py 2>&1 | tail -30
  $PY -m pytest -q -x tests 2>&1 | tail -5
}

bench() {
  install_deps
  $PY benchmarks/benchmark.py --device cuda --size 800 1333 --warmup 3 \
    --repeat 10 --rounds 2 --no-flops --models SAM-DETR SAM-DETR+SMCA \
    ConditionalDETR SAM-DETR++ SAM-DETR++/SMCA+DN \
    DeformableDETR DINO 2>&1 | tail -40
  # mmdet's own benchmark (CUDA only) needs a test set: the toy images,
  # resized by the COCO test pipeline to 800x1333 as COCO images are
  $PY -c 'from demo.toy_shapes import generate_toy_dataset as g; g("data/toy_gpu", num_train=1, num_val=60)'
  for cfg in configs/sam_detr/sam-detr_r50_4xb4-12e_coco.py \
             configs/sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py; do
    echo "== mmdet benchmark: $cfg"
    $PY "$($PY -c 'import mmdet,os;print(os.path.dirname(mmdet.__file__))')/.mim/tools/analysis_tools/benchmark.py" \
      "$cfg" --task inference --max-iter 50 --log-interval 10 \
      --cfg-options model.backbone.init_cfg=None \
      test_dataloader.dataset.data_root=data/toy_gpu/ \
      test_dataloader.dataset.ann_file=annotations/val.json \
      test_dataloader.dataset.data_prefix.img=val/ 2>&1 | grep -v Warning | tail -8
  done
}

case $step in
  build) build 2>&1 | tee "$OUT/build.log" ;;
  test) tests 2>&1 | tee "$OUT/test.log" ;;
  bench) bench 2>&1 | tee "$OUT/bench.log" ;;
  all) { build; tests; bench; } 2>&1 | tee "$OUT/all.log" ;;
  *) echo "unknown step $step (build | test | bench | all)"; exit 2 ;;
esac
