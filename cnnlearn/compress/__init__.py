"""Model compression (chapter 6): pruning, quantization, fusion, distillation.

Submodules, imported on demand (``from cnnlearn.compress import prune``):

* :mod:`~cnnlearn.compress.prune` and :mod:`~cnnlearn.compress.schedules`:
  magnitude pruning for Keras 3 models, tfmot-style schedules that refuse
  targets they cannot reach, 2:4 structured sparsity;
* :mod:`~cnnlearn.compress.quantize`: TFLite post-training quantization
  (dynamic range, full int8, float16) and LiteRT evaluation;
* :mod:`~cnnlearn.compress.fuse`: batch-norm folding, TFLite op counts;
* :mod:`~cnnlearn.compress.distill`: knowledge distillation;
* :mod:`~cnnlearn.compress.tfmot_peer`: TensorFlow Model Optimization's pruning
  in its own process, the reference ours is checked against;
* :mod:`~cnnlearn.compress.apply`: ``cnnlearn compress`` as a function;
* :mod:`~cnnlearn.compress.results`: the tables of
  ``benchmarks/results/compression.json``.
"""

from cnnlearn.compress._util import copy_model, count_nonzero, gzip_size, size_report

__all__ = ["copy_model", "count_nonzero", "gzip_size", "size_report"]
