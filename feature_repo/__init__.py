"""The Feast feature repository: definitions generated from ``common.features``, store config and jobs.

Definitions are built per data root (``build_definitions(paths)``) because the offline sources live
under ``RECSYS_DATA_DIR``; ``repo.py`` exposes them as module globals for the ``feast`` CLI.
"""
