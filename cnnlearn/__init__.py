"""cnnlearn: convolutional networks from the math to deployment.

The package behind the book: every chapter imports its implementations from here.
Submodules are imported on demand (``from cnnlearn import data, models, train``),
so ``import cnnlearn`` alone stays light.
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN notes, "no CUDA driver") is noise in
# a book; real warnings still reach Python's logging. Set the variable yourself
# to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
