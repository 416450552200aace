"""Shared contracts of the platform: schemas, domain config, paths, feature names, artifact registry.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` -- the one place it is set -- so that
every module that later imports TensorFlow (TFRS needs Keras 2) gets the legacy Keras.
Every package of the platform imports ``common`` before it imports TensorFlow.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
