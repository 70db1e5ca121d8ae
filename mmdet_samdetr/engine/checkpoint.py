# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Load Runner checkpoints under torch >= 2.6 (``weights_only`` default).

A checkpoint written by mmengine's Runner pickles its ``message_hub``
(``HistoryBuffer`` objects and numpy arrays), which ``torch.load`` refuses
since torch 2.6 flipped ``weights_only`` to True; ``--resume``, ``load_from``
and ``tools/test.py`` then fail with ``UnpicklingError``. Importing
``mmdet_samdetr`` replaces mmengine's loader for local paths with one that
passes ``weights_only=False``. Checkpoints are pickles: only load files from
a source you trust.
"""
import os.path as osp

import torch
from mmengine.runner import CheckpointLoader


def load_trusted_local_checkpoint(filename: str, map_location=None):
    """mmengine's local-file loader with ``weights_only=False``.

    Args:
        filename (str): Path of the checkpoint (``~`` is expanded).
        map_location: Same as :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


CheckpointLoader.register_scheme(
    prefixes='', loader=load_trusted_local_checkpoint, force=True)
