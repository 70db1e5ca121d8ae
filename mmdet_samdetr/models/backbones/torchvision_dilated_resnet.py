# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""ResNet whose dilated stages follow torchvision (for DC5 models)."""
from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS


@MODELS.register_module()
class TorchvisionDilatedResNet(ResNet):
    """mmdet's ResNet with torchvision's dilation rule.

    mmdet dilates the 3x3 conv of every block of a dilated stage. torchvision
    (``replace_stride_with_dilation``), which the official SAM-DETR and DETR
    DC5 models use, keeps the first block of that stage at the previous
    stage's dilation and dilates only the following blocks. The weights are
    the same; only the first block's receptive field differs, so official
    DC5 checkpoints need this backbone to reproduce their outputs.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        previous = 1
        for stage, dilation in enumerate(self.dilations[:self.num_stages]):
            if dilation != previous:
                first = getattr(self, self.res_layers[stage])[0]
                conv = first.conv2
                conv.dilation = (previous, previous)
                conv.padding = (previous, previous)
            previous = dilation
