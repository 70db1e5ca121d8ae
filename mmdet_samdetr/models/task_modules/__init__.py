# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .assigners import *  # noqa: F401,F403
