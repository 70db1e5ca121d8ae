# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Checks of the ground truth shared by the detectors and heads."""
from typing import Optional

import torch
from mmdet.structures import SampleList


def check_gt_labels(batch_data_samples: SampleList, num_classes: int) -> None:
    """Check that every ground-truth label is a class index.

    Labels index the class targets of the matching and, with denoising,
    mmdet's :class:`CdnQueryGenerator`'s label embedding: a label outside
    ``[0, num_classes)`` (e.g. -1 from a wrong category map) would be
    matched and regressed as an object yet counted as background, or fail
    deep inside with a bare index error.

    Args:
        batch_data_samples (list[DetDataSample]): ``gt_instances.labels``
            (G, ) of each image and its meta information (``img_path`` or
            ``img_id`` name the image in the error; else its index in the
            batch).
        num_classes (int): The head's ``num_classes``.

    Raises:
        ValueError: Labels that are not integers, or outside
            ``[0, num_classes)``; the message names the first such image,
            its bad values and ``num_classes``.
    """
    labels = [sample.gt_instances.labels for sample in batch_data_samples]
    given = [label.reshape(-1) for label in labels if label.numel()]
    if not given:
        return
    if all(_is_integer(label) for label in given):
        given = torch.cat(given)
        if not bool(((given < 0) | (given >= num_classes)).any()):
            return  # one read-back for the batch; the loop only on failure
    for index, (sample, label) in enumerate(zip(batch_data_samples, labels)):
        if not label.numel():
            continue
        name = image_name(sample.metainfo, index)
        if not _is_integer(label):
            raise ValueError(
                f'image {name}: ground-truth labels must be integer class '
                f'indices in [0, {num_classes}) (num_classes={num_classes}),'
                f' got dtype {label.dtype}')
        bad = (label < 0) | (label >= num_classes)
        if bad.any():
            raise ValueError(
                f'image {name}: ground-truth labels '
                f'{label[bad].unique().tolist()} (instances '
                f'{bad.nonzero()[:, 0].tolist()}) are outside [0, '
                f'{num_classes}) (num_classes={num_classes}): check the '
                "dataset's category map and the model's num_classes")


def _is_integer(tensor: torch.Tensor) -> bool:
    return not (tensor.is_floating_point() or tensor.is_complex()
                or tensor.dtype == torch.bool)


def image_name(metainfo: dict, index: Optional[int] = None) -> str:
    """How errors name an image: ``img_path``, else ``img_id``, else its
    index in the batch (``'?'`` without one)."""
    for key in ('img_path', 'img_id'):
        if metainfo.get(key) is not None:
            return str(metainfo[key])
    return '?' if index is None else f'#{index} of the batch'
