"""Shared contracts of the platform: schemas, domain config, paths, feature names, artifact registry.

Importing this package sets no environment variable (TensorFlow's Keras 2 switch is set where
TensorFlow is imported: :mod:`models.keras2`). It does import ``prometheus_client`` first: feast,
when imported before it, switches prometheus_client to its multiprocess mode for the whole process
(same-named metrics of different registries then share values), and nearly every module imports
``common`` before it reaches feast.
"""

import prometheus_client  # noqa: F401
