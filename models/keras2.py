"""TensorFlow as the platform uses it: with Keras 2. Every module imports TensorFlow and TFRS from here.

TFRS needs Keras 2 (``tf_keras``); TensorFlow 2.20 gives Keras 2 only when ``TF_USE_LEGACY_KERAS=1``
is set before TensorFlow is first imported. This module sets it (unless the environment already
says otherwise) and imports TensorFlow, so ``from models.keras2 import tf, tfrs`` is correct whatever
was imported before it -- unless something imported TensorFlow earlier with Keras 3, which is refused
here with :class:`ImportError` rather than failing later inside a model. It also quiets TensorFlow's
C++ start-up logs (``TF_CPP_MIN_LOG_LEVEL=2``) unless they are asked for.
"""

from __future__ import annotations

import os
import sys

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

if not tf.keras.__name__.startswith("tf_keras"):
    raise ImportError(
        f"TensorFlow was loaded with Keras 3 ({tf.keras.__name__}); TFRS needs Keras 2. Import TensorFlow "
        "through models.keras2 (or set TF_USE_LEGACY_KERAS=1 before anything imports it).")

import tensorflow_recommenders as tfrs  # noqa: E402

__all__ = ["tf", "tfrs"]
