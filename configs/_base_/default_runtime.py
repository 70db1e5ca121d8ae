# The package's runtime settings, inherited by every model config next to
# mmdet's base (`_base_ = ['mmdet::...', '../_base_/default_runtime.py']`).
# Importing mmdet_samdetr only registers modules; these keys switch on what
# it adds to mmengine's Runner:
# - custom_imports: mmdet's tools import the package (registers the modules);
# - runner_type: SafeLoadingRunner loads checkpoints (load_from, --resume,
#   tools/test.py) with torch.load(weights_only=True) and the allow-list of a
#   Runner checkpoint, changing mmengine's loader only while it loads; a
#   crafted file runs nothing (MMDET_SAMDETR_TRUSTED_CHECKPOINTS opts single
#   files in to a full pickle);
# - custom_hooks: NonFiniteCheckHook stops at the first NaN/inf loss term or
#   gradient norm, before that iteration is saved; RNGStateHook keeps the
#   random generators' states in every checkpoint.
# The root model configs set the train loop,
# `train_cfg = dict(type='ResumableEpochBasedTrainLoop')` (resumes inside an
# epoch where the checkpoint was written, bitwise with the generators'
# states): mmdet's bases set train_cfg, and mmengine refuses a key that two
# bases set, so only keys that mmdet's bases leave unset are here.
custom_imports = dict(imports=['mmdet_samdetr'], allow_failed_imports=False)
runner_type = 'SafeLoadingRunner'
custom_hooks = [dict(type='NonFiniteCheckHook'), dict(type='RNGStateHook')]
