"""Errors that retrying cannot fix, and the exit code that tells a scheduler so.

A :class:`DataError` is deterministic: the input data or a contract is wrong (an empty window, a
domain without the events a model needs, a release that fails its checks). Jobs raise it; their
``main`` (through :func:`spark_jobs.jobs.run_main`) exits with :data:`EXIT_DATA_ERROR`, and the
Airflow tasks that launch them turn that exit code into ``AirflowFailException`` -- fail at once,
no retries -- while any other failure (a lost executor, a full disk) keeps its retries.
"""

from __future__ import annotations

EXIT_DATA_ERROR = 3


class DataError(ValueError):
    """Bad or insufficient data, or a broken contract: the same input fails the same way every time."""
