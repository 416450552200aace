"""Shared contracts of the platform: schemas, domain config, paths, feature names, artifact registry.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` -- the one place it is set -- so that
every module that later imports TensorFlow (TFRS needs Keras 2) gets the legacy Keras.
Every package of the platform imports ``common`` before it imports TensorFlow (or feast: see below).
"""

import os

# Before anything imports feast: feast, when imported first, switches prometheus_client to its
# multiprocess mode for the whole process (same-named metrics of different registries then share values).
import prometheus_client  # noqa: E402,F401  isort: skip

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
