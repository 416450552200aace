"""What the ``feast`` CLI registers (``feast -c feature_repo apply``): the definitions for the data root
named by ``RECSYS_DATA_DIR`` (default ``./data``), exposed as module globals because ``feast apply``
collects Feast objects from module attributes. ``.feastignore`` makes this the only module it scans.
Jobs and tests use ``feature_repo.store`` (the Python SDK) instead.
"""

from __future__ import annotations

from common.paths import DataPaths
from feature_repo.definitions import build_definitions

globals().update({obj.name: obj for obj in build_definitions(DataPaths.default()).objects()})
