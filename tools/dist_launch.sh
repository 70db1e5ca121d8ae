#!/usr/bin/env bash
# Usage: tools/dist_launch.sh NUM_PROCESSES SCRIPT [SCRIPT args...]
# Runs tools/SCRIPT in NUM_PROCESSES processes with torchrun (what
# dist_train.sh and dist_test.sh share). Set NNODES, NODE_RANK, PORT,
# MASTER_ADDR and PYTHON as for mmdet's scripts.
NPROC=$1
SCRIPT=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
$PYTHON -m torch.distributed.run \
    --nnodes=$NNODES --node_rank=$NODE_RANK --master_addr=$MASTER_ADDR \
    --nproc_per_node=$NPROC --master_port=$PORT \
    "$(dirname "$0")/$SCRIPT" "${@:3}"
