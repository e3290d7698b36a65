"""The HZSR reference pipeline: alignment (reusing ``hzsr.qa``), fusion UNet, adaptive blending,
training, evaluation, tiled inference and ONNX export. The only package that may import torch
(extra ``[train]``); this ``__init__`` imports nothing, so ``hzsr.cli`` stays torch-free.
"""
