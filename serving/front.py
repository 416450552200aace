"""The nginx front of ``recsys serving serve``: the excess is refused before Python sees it.

Admission control inside a worker (:class:`serving.http.Admission`) answers the excess 503 from the
worker's event loop, which shares the GIL and the cores with the admitted requests: measured at 3x
capacity on this 2-core machine, its 503s took 10--17 ms at p99. In front of the workers, nginx (C,
event-driven, a process of its own at real-time priority when permitted) refuses them in about a
millisecond: each worker
listens on a unix socket of its own, and the recommendations upstream lets each socket have at most
``in_flight`` requests open (``max_conns``). When every socket is full, nginx answers at once with
503, ``Retry-After`` and the service's JSON error body, and appends one byte pair to a shed log that
``/metrics`` exports as ``recsys_proxy_shed_total`` (:mod:`serving.metrics`). The workers keep their
own admission control as a second line (and for ``--front none``).

The front also buffers each request body before a worker sees it (a slow client holds no worker
slot), answers a body over the limit 413 itself, and answers 503 while no worker is up (at start-up
or while a dead worker restarts). ``recsys serving serve`` supervises the workers and nginx
(:class:`common.supervisor.Supervisor`): a dead worker is restarted, one that keeps dying stops the
service with exit code 1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from common.settings import variable
from common.supervisor import ChildSpec

SHED_LOG_ENV = variable("serving_shed_log")  # the front's shed log, for the workers' /metrics
SHED_LINE = b"1\n"  # what the front appends per refused request (log_format shed)
UPSTREAM_KEEPALIVE_SECONDS = 4  # under uvicorn's 5 s keep-alive: nginx never reuses a connection uvicorn closed
# nginx runs under SCHED_FIFO at this priority when the service may (realtime_permitted): on a machine whose cores the
# Python workers keep busy, a normal-priority nginx waits its turn for ~10 ms at p99 before it can refuse
# (measured: 503 p99 8.3 ms at 3x capacity, 1.1 ms with the front and the load generator real-time). It
# mostly sleeps in epoll, and the kernel's real-time throttling bounds what a runaway one could take.
FRONT_RT_PRIORITY = 10


@dataclass(frozen=True)
class FrontPlan:
    """What the front is set up with: where it listens, how many workers, their bounds."""

    run_dir: Path  # sockets, the shed log, nginx's pid and temp files
    host: str
    port: int
    workers: int
    in_flight: int  # /v1/recommendations requests open per worker at most
    max_body_bytes: int
    retry_after_seconds: int

    def socket(self, worker: int) -> Path:
        return self.run_dir / f"worker-{worker}.sock"

    @property
    def shed_log(self) -> Path:
        return self.run_dir / "shed.log"

    @property
    def config_file(self) -> Path:
        return self.run_dir / "nginx.conf"


def find_nginx() -> str | None:
    """The nginx binary on PATH (or in /usr/sbin, where Debian puts it), None when there is none."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@cache
def _modules_compiled_out(nginx: str) -> frozenset[str]:
    """The http modules this nginx was built without (``nginx -V``): their temp paths must not be set."""
    built = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=True).stderr
    return frozenset(re.findall(r"--without-http_(\w+)_module", built))


def _error_body(message: str) -> str:
    """The service's JSON error body, quoted for an nginx ``return``."""
    return "'" + json.dumps({"error": message, "details": []}).replace("'", "\\'") + "'"


def nginx_config(plan: FrontPlan, nginx: str) -> str:
    """nginx's configuration for ``plan``: in the foreground, one worker, every path under ``run_dir``."""
    run = plan.run_dir
    temp_paths = [f"client_body_temp_path {run}/client_body;", f"proxy_temp_path {run}/proxy;"]
    temp_paths += [f"{module}_temp_path {run}/{module};" for module in ("fastcgi", "uwsgi", "scgi")
                   if module not in _modules_compiled_out(nginx)]
    sockets = [plan.socket(i) for i in range(plan.workers)]
    bounded = "\n".join(f"    server unix:{s} max_conns={plan.in_flight} max_fails=0;" for s in sockets)
    unbounded = "\n".join(f"    server unix:{s} max_fails=0;" for s in sockets)
    retry = f"add_header Retry-After {plan.retry_after_seconds} always;"
    over = _error_body(f"over capacity: every worker has {plan.in_flight} requests to /v1/recommendations in "
                       "flight (or none is up); retry later")
    down = _error_body("no serving worker is up yet (starting or restarting); retry later")
    too_large = _error_body(f"request body larger than {plan.max_body_bytes} bytes")
    return f"""# written by recsys serving serve (serving/front.py); regenerated at every start
daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  server_tokens off;
  log_format shed '1';
  {' '.join(temp_paths)}
  client_max_body_size {plan.max_body_bytes};
  client_body_buffer_size {plan.max_body_bytes};
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $http_host;
  proxy_set_header X-Forwarded-For $remote_addr;
  default_type application/json;
  upstream recommendations {{
{bounded}
    keepalive {4 * plan.workers * plan.in_flight};
    keepalive_timeout {UPSTREAM_KEEPALIVE_SECONDS}s;
  }}
  upstream service {{
{unbounded}
    keepalive {4 * plan.workers};
    keepalive_timeout {UPSTREAM_KEEPALIVE_SECONDS}s;
  }}
  server {{
    listen {plan.host}:{plan.port} backlog=4096;
    # (a location with error_page directives of its own inherits none: each one names 413 itself)
    location = /v1/recommendations {{
      proxy_pass http://recommendations;
      error_page 502 = @over_capacity;
      error_page 413 = @too_large;
      error_log stderr crit;  # each refused request is a 'no live upstreams' error: counted, not logged
    }}
    location / {{
      proxy_pass http://service;
      error_page 502 = @no_worker;
      error_page 413 = @too_large;
    }}
    location @over_capacity {{
      access_log {plan.shed_log} shed buffer=4k flush=1s;
      {retry}
      return 503 {over};
    }}
    location @no_worker {{
      {retry}
      return 503 {down};
    }}
    location @too_large {{
      return 413 {too_large};
    }}
  }}
}}
"""


def front_children(plan: FrontPlan, nginx: str, log_level: str, env: Mapping[str, str]) -> list[ChildSpec]:
    """The processes of a fronted service: one uvicorn worker per socket, then nginx. Writes nginx's
    configuration and checks it (``nginx -t``), so a bad one fails before anything starts."""
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    plan.run_dir.chmod(0o711)  # nginx's worker may run as another user: it must reach the sockets
    plan.config_file.write_text(nginx_config(plan, nginx))
    check = subprocess.run([nginx, "-t", "-q", "-c", str(plan.config_file), "-p", str(plan.run_dir)],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx refused the front's configuration {plan.config_file}: {check.stderr.strip()}")
    env = {**env, SHED_LOG_ENV: str(plan.shed_log)}
    workers = [ChildSpec(f"serving worker {i}", [sys.executable, "-m", "uvicorn", "--factory", "serving.cli:worker_app",
                                                  "--uds", str(plan.socket(i)), "--log-level", log_level,
                                                  "--no-access-log"], env)
               for i in range(plan.workers)]
    realtime = ["chrt", "--fifo", str(FRONT_RT_PRIORITY)] if realtime_permitted() else []
    return [*workers, ChildSpec("nginx front", [*realtime, nginx, "-c", str(plan.config_file), "-p", str(plan.run_dir)],
                                env)]


@cache
def realtime_permitted() -> bool:
    """Whether this process may start children under SCHED_FIFO: ``chrt`` is at hand and a trial of it
    succeeds (root in a container may still lack CAP_SYS_NICE; nginx then runs at normal priority)."""
    chrt = shutil.which("chrt")
    if chrt is None:
        return False
    trial = subprocess.run([chrt, "--fifo", str(FRONT_RT_PRIORITY), "true"], capture_output=True)
    return trial.returncode == 0


def shed_count(shed_log: Path) -> int:
    """Requests the front refused so far (its shed log holds one :data:`SHED_LINE` per request)."""
    try:
        return shed_log.stat().st_size // len(SHED_LINE)
    except FileNotFoundError:
        return 0
