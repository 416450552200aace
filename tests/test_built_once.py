"""``BuiltOnce`` (tests/conftest.py): a world is built once per run, however many workers ask for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.paths import REPO_ROOT

CONFTEST = Path(__file__).parent / "conftest.py"
# a worker process: loads the suite's conftest and asks for a world whose build takes half a second
ASK = f"""
import importlib.util, pathlib, sys, time
spec = importlib.util.spec_from_file_location("suite_conftest", {str(CONFTEST)!r})
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)
root = pathlib.Path(sys.argv[1])

def make(directory):
    with (root / "calls").open("a") as calls:
        calls.write("built\\n")
    time.sleep(0.5)  # long enough for the other process to ask while this one builds
    (directory / "world").write_text("ok")

print((conftest.BuiltOnce(root).get("world", make) / "world").read_text())
"""


def test_two_processes_asking_at_once_build_it_once(tmp_path: Path) -> None:
    workers = [subprocess.Popen([sys.executable, "-c", ASK, str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]
    answers = [worker.communicate(timeout=120)[0].strip() for worker in workers]
    assert answers == ["ok", "ok"]
    assert (tmp_path / "calls").read_text() == "built\n"


def test_a_failed_build_is_built_again_by_the_next_asker(tmp_path: Path, built_once) -> None:  # noqa: ANN001
    once = type(built_once)(tmp_path)  # the suite's BuiltOnce, over a directory of this test's own

    def broken(directory: Path) -> None:
        (directory / "half").write_text("")
        raise RuntimeError("the build broke")

    with pytest.raises(RuntimeError, match="the build broke"):
        once.get("world", broken)
    built = once.get("world", lambda directory: (directory / "world").write_text("ok"))
    assert (built / "world").read_text() == "ok" and not (built / "half").exists()
