#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args...]
# Like mmdet's dist_train.sh, with torchrun. On a CPU-only machine our
# configs' CPUDDPRunner trains with gloo; on GPUs, NCCL as usual.
exec "$(dirname "$0")/dist_launch.sh" "$2" train.py "$1" --launcher pytorch \
    "${@:3}"
