"""cnnlearn: convolutional networks from the math to deployment.

The package behind the book: every chapter imports its implementations from here.
Submodules are imported on demand (``from cnnlearn import data, models, train``),
so ``import cnnlearn`` alone stays light.

The core (``config``, ``data``, ``models``, ``train``, ``ops``, ``plots``,
``pipeline``'s seeded batches, ``compute`` and the ``train`` command) runs on any
Keras 3 backend, TensorFlow, JAX or PyTorch, and imports no TensorFlow; the
TensorFlow parts load it through :func:`cnnlearn._tf.require_tensorflow`, which
says in one line when it is missing (chapter 4, section 4.7).

Public API, one rule for every package: a module lists its public names in one
``__all__``, and a package's ``__init__`` re-exports the ``__all__`` of each of
its modules, so ``ops.conv2d`` and ``ops.conv.conv2d`` are the same function and
a name has one home. A name that starts with ``_`` is private to its module and
never imported by another; a module that starts with ``_`` (``cnnlearn._io``)
serves its package's modules and is not part of the API. The exceptions say so
in their package's docstring and expose those modules only, imported on demand:
modules whose import would load what some users of the package must avoid (the
LiteRT server runs without TensorFlow, so ``deploy`` re-exports nothing;
``compress.tfmot_peer`` switches the process to tf_keras), and modules whose
names read only with the module's name in front (``report.claims.check``,
``report.provenance.start``).
"""

import os

# Hide TensorFlow's C++ INFO and WARNING logs (errors still show; Python-side
# warnings are unaffected). Set the variable yourself to choose otherwise. The
# few lines TF prints before its logging starts ignore it: see cnnlearn.cli.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
