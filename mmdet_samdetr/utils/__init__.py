# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .convert_official import (UnknownLayoutError, convert_checkpoint,
                               convert_state_dict)

__all__ = ['UnknownLayoutError', 'convert_checkpoint', 'convert_state_dict']
