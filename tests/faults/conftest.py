"""Fixtures of the fault suite: the serving tests' small real world, re-used rather than rebuilt.

Every test here injects one fault (a full disk, a stalled online store, a hostile record, a clock
that runs ahead, a corrupt release pointer, a replaced file, a killed process) into the real
component and checks that nothing is lost, nothing is forged and the answer says it is degraded.
Mocks appear only to inject the fault.

``world`` and ``publish`` are the session fixtures of ``tests/serving/conftest.py`` (trained
retrievers and ranker, a filled Feast SQLite store, the release template); a conftest only serves
its own directory and with ``--import-mode=importlib`` cannot be imported by name, so it is loaded
from its file (under the module name ``tests/e2e`` uses, so it executes once).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _serving_world() -> ModuleType:
    name = "e2e_serving_world_conftest"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "serving" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return module


SERVING_WORLD = _serving_world()
world = SERVING_WORLD.world
publish = SERVING_WORLD.publish
metric_delta = SERVING_WORLD.metric_delta
