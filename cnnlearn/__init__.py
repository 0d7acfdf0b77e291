"""cnnlearn: convolutional networks from the math to deployment.

The package behind the book: every chapter imports its implementations from here.
Submodules are imported on demand (``from cnnlearn import data, models, train``),
so ``import cnnlearn`` alone stays light.
"""

import os

# Hide TensorFlow's C++ INFO and WARNING logs (errors still show; Python-side
# warnings are unaffected). Set the variable yourself to choose otherwise. The
# few lines TF prints before its logging starts ignore it: see cnnlearn.cli.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
