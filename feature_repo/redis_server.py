"""A throw-away local ``redis-server`` (tests, benchmarks, demos): free loopback port, no persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

REDIS_SERVER = "/usr/bin/redis-server"
START_TIMEOUT_S = 10.0


def redis_server_binary() -> str | None:
    """``/usr/bin/redis-server`` (installed by ``make setup``), else one on ``PATH``, else None."""
    return REDIS_SERVER if shutil.which(REDIS_SERVER) else shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_pid(connection_string: str) -> int:
    """The pid of this process's child ``redis-server`` listening on the connection string's port (fault
    tests stop and resume it)."""
    import psutil  # only fault tests need it

    port = int(connection_string.split(",", 1)[0].rsplit(":", 1)[1])
    (server,) = [child for child in psutil.Process().children()
                 if any(c.laddr.port == port for c in child.net_connections() if c.status == psutil.CONN_LISTEN)]
    return server.pid


def _wait_ready(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"redis-server did not answer on port {port} within {START_TIMEOUT_S} s")


@contextmanager
def local_redis() -> Iterator[str]:
    """Run ``redis-server`` on a free loopback port; yields Feast's connection string ``127.0.0.1:<port>``."""
    binary = redis_server_binary()
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (make setup installs it)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
