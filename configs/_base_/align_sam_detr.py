# Align-DETR's training targets for a SAM-DETR model: mixed one-to-k
# matching and the Align Loss, as variables for the align-sam-detr configs
# (`model = dict(bbox_head=_base_.align_bbox_head, ...)`); the toy Align-DETR
# takes its loss_cls and the assigner.
align_bbox_head = dict(
    type='AlignSAMDETRHead',
    # k per decoder layer; None: the released configs' 2 on every layer but
    # the last, which stays one-to-one (1)
    all_layers_num_gt_repeat=None,
    loss_cls=dict(
        _delete_=True,
        type='AlignLoss',
        form='align',  # the paper's Eq. 3; 'ia_bce': the released code
        alpha=0.25,
        gamma=2.0,
        tau=1.5,
        loss_weight=1.0))  # Align-DETR's class weight (SAM-DETR's focal: 2)
# ranks the candidates by the loss's quality (alpha taken from loss_cls)
align_assigner = dict(type='MixedHungarianAssigner')
