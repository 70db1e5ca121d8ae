#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args...]
# Like mmdet's dist_train.sh, with torchrun: NCCL on GPUs. On a CPU-only
# machine, configs with runner_type = 'CPUDDPRunner' (the toy configs) train
# with gloo.
exec "$(dirname "$0")/dist_launch.sh" "$2" train.py "$1" --launcher pytorch \
    "${@:3}"
