"""Model compression (chapter 6): pruning, quantization, fusion, distillation.

The modules:

* :mod:`~cnnlearn.compress.prune` and :mod:`~cnnlearn.compress.schedules`:
  magnitude pruning for Keras 3 models, tfmot-style schedules that refuse
  targets they cannot reach, 2:4 structured sparsity;
* :mod:`~cnnlearn.compress.quantize`: TFLite post-training quantization
  (dynamic range, full int8, float16) and LiteRT evaluation;
* :mod:`~cnnlearn.compress.fuse`: batch-norm folding, TFLite op counts;
* :mod:`~cnnlearn.compress.distill`: knowledge distillation;
* :mod:`~cnnlearn.compress.apply`: ``cnnlearn compress`` as a function;
* :mod:`~cnnlearn.compress.tfmot_peer`: TensorFlow Model Optimization's pruning
  in its own process, the reference ours is checked against;
* :mod:`~cnnlearn.compress.affine`: the affine (int8) quantization arithmetic;
* :mod:`~cnnlearn.compress.common`: sizes, counts, copies, a quiet block.

The tables of ``benchmarks/results/compression.json`` are in
:mod:`cnnlearn.report.compression`.

Public API: an exception to the package rule (:mod:`cnnlearn`). The package
re-exports the names (``__all__``) of its NumPy-only modules, ``affine``,
``common`` and ``schedules``, and exposes the others as modules, imported on
demand (``from cnnlearn.compress import prune``): the LiteRT model server
imports ``affine`` and ``common`` and must not load TensorFlow, which
``prune``, ``quantize``, ``fuse``, ``distill`` and ``apply`` do; and
``tfmot_peer``'s subprocess side switches its process to ``tf_keras``.
"""

from cnnlearn.compress.affine import (
    affine_params,
    dequantize,
    from_output_tensor,
    quantize_array,
    to_input_tensor,
)
from cnnlearn.compress.common import (
    copy_model,
    count_nonzero,
    gzip_size,
    quiet,
    read_bytes,
    size_report,
)
from cnnlearn.compress.schedules import (
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
    check_sparsity,
    ramp_end_step,
)

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "affine_params",
    "check_sparsity",
    "copy_model",
    "count_nonzero",
    "dequantize",
    "from_output_tensor",
    "gzip_size",
    "quantize_array",
    "quiet",
    "read_bytes",
    "ramp_end_step",
    "size_report",
    "to_input_tensor",
]
