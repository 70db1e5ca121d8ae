# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .torchvision_dilated_resnet import TorchvisionDilatedResNet

__all__ = ['TorchvisionDilatedResNet']
