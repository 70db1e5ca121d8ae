# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""mmdet's ``DetInferencer`` with salient points in its predictions."""
import os.path as osp
from typing import Dict

import mmengine
from mmdet.apis import DetInferencer
from mmdet.structures import DetDataSample

from ..engine import safe_checkpoint_loading


class SAMDETRInferencer(DetInferencer):
    """:class:`mmdet.apis.DetInferencer` whose dict predictions (and the
    ``preds/*.json`` files written with ``out_dir``) also hold each
    detection's ``salient_points``: (num_dets, 8, 2) (x, y) in original-image
    pixels, in the order of ``bboxes``.

    mmdet's own ``DetInferencer`` works on every config here; its dicts
    only keep labels, scores and boxes (the salient points are in its
    ``return_datasamples=True`` results, as in ``inference_detector``'s),
    and under torch >= 2.6 it reads a Runner checkpoint (``epoch_*.pth``)
    only inside :func:`~mmdet_samdetr.engine.safe_checkpoint_loading`.
    This class loads ``weights`` inside it.

    Examples:
        >>> inferencer = SAMDETRInferencer(model=CONFIG, weights=CHECKPOINT)
        >>> inferencer('demo.jpg')['predictions'][0]['salient_points']
    """

    def __init__(self, *args, **kwargs) -> None:
        """Same arguments as :class:`mmdet.apis.DetInferencer`."""
        with safe_checkpoint_loading():
            super().__init__(*args, **kwargs)

    def pred2dict(self,
                  data_sample: DetDataSample,
                  pred_out_dir: str = '') -> Dict:
        """:meth:`DetInferencer.pred2dict`, plus ``salient_points``."""
        if pred_out_dir and data_sample.get('img_path', '') is None:
            # Workaround: mmdet 3.3 names the file after ``img_path``, which
            # is None for an array input (TypeError in osp.basename); without
            # it mmdet numbers the files instead.
            del data_sample.img_path
        index = self.num_predicted_imgs  # the file name mmdet uses, if any
        result = super().pred2dict(data_sample, pred_out_dir)
        points = data_sample.get('pred_instances', {}).get('salient_points')
        if points is None:
            return result
        result['salient_points'] = points.cpu().numpy().tolist()
        if pred_out_dir:  # mmdet has written the file without them
            name = (osp.splitext(osp.basename(data_sample.img_path))[0]
                    if 'img_path' in data_sample else str(index))
            mmengine.dump(result, osp.join(pred_out_dir, 'preds',
                                           name + '.json'))
        return result
