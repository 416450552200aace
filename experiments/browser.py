"""Render a page in real headless Chromium (Debian's ``chromium`` package): screenshots and DOM dumps.

:func:`serve_app` runs an ASGI app with uvicorn on a free loopback port in a background thread;
:func:`screenshot` / :func:`dump_dom` run one Chromium process (in its own process group, which is
killed when it is done, so no renderer or zygote process outlives the call).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from common.settings import env

DEFAULT_CHROMIUM = "/usr/bin/chromium"
STARTUP_TIMEOUT_S = 20.0


def chromium_binary() -> str | None:
    """The Chromium executable (``RECSYS_CHROMIUM``, ``chromium`` on PATH, or /usr/bin/chromium)."""
    candidate = env().chromium or shutil.which("chromium") or DEFAULT_CHROMIUM
    return candidate if Path(candidate).exists() else None


@contextmanager
def serve_app(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on ``host`` at a free port for the duration of the block; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="dashboard-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _run_chromium(args: list[str], timeout_s: float) -> str:
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium, or set RECSYS_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="recsys-chromium-") as profile:
        command = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args,
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout_s)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"chromium exited with {process.returncode}: {err[-2000:]}")
    return out


def screenshot(url: str, out: Path, width: int = 1280, height: int = 2000, timeout_s: float = 90.0) -> Path:
    """Save a PNG of ``url`` as rendered at ``width`` x ``height``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    _run_chromium([f"--screenshot={out.resolve()}", f"--window-size={width},{height}", "--hide-scrollbars", url],
                  timeout_s)
    if not out.exists():
        raise RuntimeError(f"chromium did not write {out}")
    return out


def dump_dom(url: str, timeout_s: float = 90.0) -> str:
    """The DOM of ``url`` after loading, serialised by the browser."""
    return _run_chromium(["--dump-dom", url], timeout_s)
