"""TensorFlow comes with Keras 2 whichever platform module imports it first; importing ``common`` sets nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.paths import REPO_ROOT


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL"}}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=300)


def test_importing_common_and_its_settings_sets_no_environment_variable() -> None:
    result = _python("import os; before = dict(os.environ); import common, common.settings, common.features; "
                     "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())")
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("first", ["models.ranking.model", "models.retrieval.two_tower", "models.ranking.encoder"])
def test_a_model_module_imported_first_gets_keras_2(first: str) -> None:
    result = _python(f"import {first}; from models.keras2 import tf; print(tf.keras.__name__)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith("tf_keras")


def test_tensorflow_loaded_with_keras_3_is_refused_with_a_clear_error() -> None:
    result = _python("import tensorflow; import models.keras2")
    assert result.returncode != 0
    assert "ImportError: TensorFlow was loaded with Keras 3" in result.stderr
