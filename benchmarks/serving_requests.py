"""What the serving benchmarks share: the requests they send, the service's settings, the metric scrapes.

Used by :mod:`benchmarks.serving_load`, :mod:`benchmarks.overload` and :mod:`benchmarks.platform_load`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import orjson

from benchmarks.prom_samples import Samples, metric_delta, parse_metrics, select

DEVICES, DEVICE_SHARE = ("web", "ios", "android"), (0.45, 0.30, 0.25)
K = 10
# 3 x 200 (the serving default) merge to ~480 distinct candidates on the scratch world, 3 x 250 to ~500
CANDIDATES_PER_RETRIEVER = 250


def world_roots(parser: argparse.ArgumentParser, args: argparse.Namespace, rebuild: bool = False,
                **spec: int) -> tuple[Path, Path]:
    """``(data root, artifacts root)``: ``--data-dir``/``--artifacts-dir`` when given (both or neither), else
    the scratch world under ``--work-dir``/world built with ``spec`` (:class:`~benchmarks.serving_world.WorldSpec`
    fields), built once and then reused."""
    if (args.data_dir is None) != (args.artifacts_dir is None):
        parser.error("--data-dir and --artifacts-dir go together")
    if args.data_dir is not None:
        return args.data_dir.resolve(), args.artifacts_dir.resolve()
    from benchmarks.serving_world import WorldSpec, ensure_world

    print("preparing the scratch world (built once, then reused) ...", flush=True)
    world = ensure_world(args.work_dir / "world", WorldSpec(**spec), rebuild=rebuild)
    return world.data_root, world.artifacts_root


def known_users(data_root: Path, domain: str) -> list[str]:
    """The domain's user ids from the lake's users table."""
    from common.lake import read_users
    from common.paths import DataPaths

    users = read_users(DataPaths(data_root), domain)["user_id"].astype(str).tolist()
    if not users:
        raise RuntimeError(f"no {domain} users under {data_root}: nothing to request recommendations for")
    return users


def request_bodies(known_users: Sequence[str], n: int, domain: str, prefix: str, unknown_share: float,
                   rng: np.random.Generator) -> list[bytes]:
    """``n`` JSON bodies: mostly users of the world, ``unknown_share`` of never-seen ids, k=10."""
    unknown = rng.random(n) < unknown_share
    picks = rng.integers(0, len(known_users), n)
    devices = rng.choice(len(DEVICES), size=n, p=DEVICE_SHARE)
    bodies = []
    for i in range(n):
        user = f"{prefix}u_new{rng.integers(10**8)}" if unknown[i] else known_users[picks[i]]
        context = {"device": DEVICES[devices[i]], "session_id": f"s-{user}-{i // 20}"}
        bodies.append(orjson.dumps({"user_id": user, "domain": domain, "k": K, "context": context}))
    return bodies


def world_requests(data_root: Path, domain: str, unknown_share: float, rng: np.random.Generator,
                   n: int = 20_000) -> tuple[list[str], list[bytes]]:
    """The domain's known users and ``n`` request bodies for them (see :func:`request_bodies`)."""
    from common.domains import domain as domain_config

    users = known_users(data_root, domain)
    return users, request_bodies(users, n, domain, domain_config(domain).id_prefix, unknown_share, rng)


def write_settings(work: Path, candidates_per_retriever: int, data_root: Path,
                   artifacts_root: Path) -> tuple[Path, dict[str, str]]:
    """The serving variant (``config/serving.yaml`` with ``candidates_per_retriever``), an experiments
    file without experiments (every user gets the full pipeline), and the service's environment naming
    the data root, the artifact root and that experiments file: ``(serving file, environment)``."""
    from loop.service import write_variant

    work.mkdir(parents=True, exist_ok=True)
    serving = write_variant(work / "serving.yaml", {}, {"candidates_per_retriever": candidates_per_retriever})
    experiments = work / "experiments.yaml"
    experiments.write_text("experiments: {}\n")
    return serving, {"RECSYS_DATA_DIR": str(data_root), "RECSYS_ARTIFACTS_DIR": str(artifacts_root),
                     "RECSYS_EXPERIMENTS_FILE": str(experiments)}


def scrape(client: httpx.Client, urls: Sequence[str]) -> list[Samples]:
    return [parse_metrics(client.get(f"{url}/metrics").text) for url in urls]


def answered_requests(delta: Samples) -> float:
    """Recommendation requests the service answered: by its workers, and refused by its nginx front."""
    return sum(v for name in ("recsys_requests_total", "recsys_proxy_shed_total")
               for _, v in select(delta, name, route="/v1/recommendations"))


def scrape_settled(client: httpx.Client, urls: Sequence[str], before: list[Samples], answered: int,
                    timeout_s: float = 10.0) -> list[Samples]:
    """The scrape after a run, once every answer the client got is counted by the servers.

    A request is counted when its handling ends, which can be just after its answer reaches the client;
    the last answers can arrive before their count is in.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        after = scrape(client, urls)
        counted = sum(answered_requests(metric_delta(b, a)) for b, a in zip(before, after, strict=True))
        if counted >= answered or time.monotonic() > deadline:
            return after
        time.sleep(0.05)
