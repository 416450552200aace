"""Issue 7, end to end: events POSTed to serving reach the online store through the running streaming
job, and the users' slates change accordingly -- asserted, not eyeballed.

Two real processes on one temporary data root: the service (``python -m loop.service``: uvicorn +
``serving.app``) and the streaming job (``python -m cli stream run``). The release is the serving
tests' small world (48 items, 16 categories ``L1>L2>L3`` of 3 items each, 24 users who each touched
four categories) with a ranker that has learned to value the user's interactions in a candidate's
category (``conftest.interest_ranker``).

Why the assertion is deterministic: every item is a candidate (the popularity retriever alone returns
the whole 48-item catalog), so the slate order is the ranker's, then bounded boosts and diversity caps
-- all deterministic for fixed features; exploration (the random part) is switched off in a settings
variant; the request time is pinned (``trust_context_timestamp``) so the ranker's hour-of-day feature is
the same before and after; the experiment config is emptied so every user gets the full pipeline (the
``legacy_segment`` control arm ignores user features by design); every response must take path
``full`` (generous stage budgets, so a slow machine cannot degrade it to the retrieval order).

What has to happen for a category to rise: the views reach ``user_activity`` (recent items and
recent category counts) through the stream, serving reads them, and the ranker sees them -- its
category signal is the cross feature ``x_cat_views``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from common.deadletter import read_dead_letters
from common.lake import read_events, write_catalog
from common.online_features import OnlineFeatures
from common.paths import REPO_ROOT, DataPaths
from common.polling import wait_until
from common.registry import ArtifactRegistry
from feature_repo.store import get_store
from loop.service import ServiceClient, ServiceProcess, Slate, write_variant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "e2e-freshness-key-0123"
USERS = ("r_u00", "r_u01", "r_u02", "r_u03")  # one per taste group of the world (user u likes lines u % 4)
K = 10
DEVICE = "web"
FRESHNESS_TIMEOUT_S = 60.0
LAKE_TIMEOUT_S = 60.0
GENEROUS_BUDGETS_MS = {"total": 20_000, "user_features": 4_000, "retrieval": 8_000, "item_features": 4_000,
                       "ranking": 4_000}


class SlateDidNotReact(AssertionError):
    """The events are online, yet the slates did not move towards the viewed categories."""


@dataclass
class Platform:
    root: Path
    paths: DataPaths
    catalog: pd.DataFrame
    client: ServiceClient
    service: ServiceProcess
    stream: subprocess.Popen
    stream_log: Path


def _wait_for(what: str, condition: Callable[[], Any], timeout: float, poll: float = 0.1) -> Any:
    return wait_until(condition, timeout, what, poll)


def _stop_stream(process: subprocess.Popen, timeout: float = 60.0) -> int:
    """SIGTERM (the job finishes its current micro-batch, then exits), SIGKILL if it hangs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def _release_with(interest_ranker: Path) -> Callable[[Path], None]:
    def mutate(staging: Path) -> None:
        shutil.rmtree(staging / "ranker")
        shutil.copytree(interest_ranker, staging / "ranker")

    return mutate


def _start_stream(paths: DataPaths, env: dict[str, str], log_file: Path) -> subprocess.Popen:
    """``recsys stream run`` on the data root, in its own process group (stopped by :func:`_stop_stream`)."""
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "stream", "run", "--data-dir", str(paths.root), "--poll-interval", "0.2"],
            cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The world's release served by a uvicorn subprocess and streamed by ``cli stream run``, one data root.

    The service starts first, with no release yet: its start-up overlaps with the world being built (it
    turns ready once the release appears); the stream needs the Feast registry, so it starts once the
    world's store is copied, while the e2e ranker trains.
    """
    clock = time.monotonic()
    root = tmp_path_factory.mktemp("freshness")
    paths = DataPaths(root / "data")
    serving_file = write_variant(root / "serving.yaml", {"exploration": {"share": 0.0}},
                                 {"trust_context_timestamp": True, "budgets_ms": GENEROUS_BUDGETS_MS,
                                  "release_poll_seconds": 0.2})
    experiments_file = root / "experiments.yaml"
    experiments_file.write_text("experiments: {}\n")  # no A/B split: every user gets the full pipeline
    env = {"RECSYS_DATA_DIR": str(paths.root), "RECSYS_ARTIFACTS_DIR": str(root / "artifacts"),
           "RECSYS_API_KEY": API_KEY, "RECSYS_EXPERIMENTS_FILE": str(experiments_file), "TF_CPP_MIN_LOG_LEVEL": "2",
           "RECSYS_ONLINE_STORE": "sqlite"}
    service = ServiceProcess(["retail"], env, serving_file, log_file=root / "service.log")
    stream: subprocess.Popen | None = None
    client: ServiceClient | None = None
    try:
        world = request.getfixturevalue("world")
        shutil.copytree(world.store_paths.root, paths.root, dirs_exist_ok=True)  # Feast registry + online store
        write_catalog(world.catalog, paths, "retail")  # the stream's catalog side input (item -> category)
        stream = _start_stream(paths, env, root / "stream.log")  # starts up while the ranker trains
        interest_ranker = request.getfixturevalue("interest_ranker")
        built = time.monotonic()
        request.getfixturevalue("publish")(ArtifactRegistry(root / "artifacts"), "v1",
                                           mutate=_release_with(interest_ranker))
        service.wait_ready()
        print(f"\nworld + e2e ranker {built - clock:.1f} s, then service ready {time.monotonic() - built:.1f} s later")
        client = ServiceClient(service.url, API_KEY)
        client.wait_for_releases({"retail": "v1"}, timeout_s=120)  # ready comes first: the lake fallback serves
        yield Platform(root, paths, world.catalog, client, service, stream, root / "stream.log")
    finally:
        if client is not None:
            client.close()
        service.stop()
        if stream is not None:
            _stop_stream(stream)


def _line(category: str) -> str:
    """The product line (``L1>L2``) of a taxonomy path: the unit of the slate's diversity cap."""
    return ">".join(category.split(">")[:2])


def _target_category(user: dict[str, Any], ordering: list[str], categories: dict[str, str]) -> str:
    """A category from a product line the user never touched (batch history and profile), the one the
    full-catalog ordering puts lowest before the events: the most room to rise, chosen deterministically.
    Categories with an item the ordering lacks (filtered: the world has one out-of-stock item) are skipped."""
    touched = {_line(c) for c in [*user["cat_keys"], *user["top_categories"], *user["recent_category_keys"]]}
    rank = {item: r for r, item in enumerate(ordering)}

    def mean_rank(category: str) -> float:
        ranks = [rank[i] for i, c in categories.items() if c == category]
        return sum(ranks) / len(ranks)

    servable = {c for c in categories.values()} - {c for i, c in categories.items() if i not in rank}
    untouched = sorted(c for c in servable if _line(c) not in touched)
    assert untouched, "the world's users were expected to leave some product lines untouched"
    return max(untouched, key=lambda c: (mean_rank(c), c))


def _events(user: str, items: list[str], at: datetime) -> list[dict[str, Any]]:
    """A browsing burst: a view of every item of the category, then a click on the first one."""
    kinds = [("view", item) for item in items] + [("click", items[0])]
    return [{"event_id": f"e2e-{uuid.uuid4().hex}", "domain": "retail", "user_id": user, "item_id": item,
             "event_type": kind, "timestamp": (at + timedelta(milliseconds=n)).isoformat(),
             "session_id": f"e2e-{user}", "device": DEVICE}
            for n, (kind, item) in enumerate(kinds)]


@dataclass(frozen=True)
class Placement:
    """Where one category sits in one user's top-K slate and in the full-catalog ordering."""

    in_slate: int  # items of the category among the top K
    best_slot: int  # 1-based best slot in the top K; K + 1 when absent
    mean_rank: float  # mean 1-based rank of its items over the whole catalog

    @classmethod
    def of(cls, category: str, categories: dict[str, str], slate: Slate, ordering: Slate) -> Placement:
        slots = [n for n, item in enumerate(slate.item_ids, start=1) if categories[item] == category]
        ranks = [n for n, item in enumerate(ordering.item_ids, start=1) if categories[item] == category]
        return cls(len(slots), min(slots, default=K + 1), sum(ranks) / len(ranks))


def test_posted_events_reach_the_online_store_and_lift_the_viewed_category(platform: Platform) -> None:
    client, paths, catalog = platform.client, platform.paths, platform.catalog
    categories = dict(zip(catalog["item_id"], catalog["category"], strict=True))
    online = OnlineFeatures(get_store(paths))  # serving's own read path, on the same store
    pinned = datetime.now(UTC).replace(microsecond=0)  # the request time of every slate (hour-of-day fixed)

    def slates(user: str) -> tuple[Slate, Slate]:
        """The user's top-K slate and the full-catalog ordering, both at the pinned time."""
        pair = tuple(client.recommend(user, "retail", k, DEVICE, f"e2e-{user}", timestamp=pinned.isoformat())
                     for k in (K, len(catalog)))
        assert all(s.path == "full" for s in pair), f"{user}: served by path {[s.path for s in pair]}, not 'full'"
        return pair

    before = {u: slates(u) for u in USERS}
    served = [s for pair in before.values() for s in pair]
    # the stream is up and consuming once the impressions of these slates are in the lake
    started = time.monotonic()
    _wait_for("the streaming job to land the first impressions", lambda: {s.request_id for s in served} <= set(
        read_events(paths, "retail", columns=["event_id", "request_id"])["request_id"]), LAKE_TIMEOUT_S * 2)
    print(f"stream consuming: first impressions in the lake {time.monotonic() - started:.1f} s after the slates")

    users = {u: online.user_features(u).values for u in USERS}
    targets = {u: _target_category(users[u], before[u][1].item_ids, categories) for u in USERS}
    viewed = {u: sorted(i for i, c in categories.items() if c == targets[u]) for u in USERS}
    now = datetime.now(UTC)
    events = [e for u in USERS for e in _events(u, viewed[u], now)]

    posted_at = time.monotonic()
    intake = client.post_events(events)
    assert intake == {"accepted": len(events), "rejected": 0}, intake

    def visible() -> dict[str, float]:
        """Per user, seconds from the POST until the store showed every viewed item and its category."""
        for u in USERS:
            if u in seen:
                continue
            row = online.user_features(u).values
            counts = dict(zip(row["recent_category_keys"], row["recent_category_counts"], strict=False))
            if set(viewed[u]) <= set(row["recent_item_ids"]) and counts.get(targets[u]) == len(viewed[u]):
                seen[u] = time.monotonic() - posted_at
        return seen if len(seen) == len(USERS) else {}

    seen: dict[str, float] = {}
    try:
        freshness = _wait_for("the posted events to show in the users' online user_activity", visible,
                              FRESHNESS_TIMEOUT_S)
    except AssertionError as err:
        tail = platform.stream_log.read_text()[-2000:]
        raise AssertionError(f"{err}; visible for {sorted(seen)} of {list(USERS)}; stream log tail:\n{tail}") from None
    print("freshness seconds (POST sent -> online store shows all the user's views): "
          + ", ".join(f"{u} {s:.2f}" for u, s in freshness.items()) + f"; max {max(freshness.values()):.2f}")

    after = {u: slates(u) for u in USERS}
    served += [s for pair in after.values() for s in pair]
    placements = {u: (Placement.of(targets[u], categories, *before[u]), Placement.of(targets[u], categories, *after[u]))
                  for u in USERS}
    for u, (was, now_) in placements.items():
        print(f"{u} {targets[u]}: in top {K} {was.in_slate} -> {now_.in_slate}, best slot {was.best_slot} -> "
              f"{now_.best_slot}, mean catalog rank {was.mean_rank:.1f} -> {now_.mean_rank:.1f}")

    # nothing lost: every posted event and every impression serving logged reached the lake, once each
    def landed() -> Any:
        lake = read_events(paths, "retail", columns=["event_id", "request_id", "event_type"])
        impressions = lake[lake["request_id"].isin({s.request_id for s in served}) & (lake["event_type"] == "impression")]
        complete = {e["event_id"] for e in events} <= set(lake["event_id"]) and len(impressions) == sum(
            len(s.item_ids) for s in served)
        return [lake] if complete else []

    (lake,) = _wait_for("the posted events and the slates' impressions to reach the lake", landed, LAKE_TIMEOUT_S)
    assert lake["event_id"].is_unique
    assert list(read_dead_letters(paths)) == []
    assert _stop_stream(platform.stream) == 0, platform.stream_log.read_text()[-2000:]
    summary = orjson.loads((paths.root / "streaming" / "summary.json").read_bytes())
    print("stream summary: events", summary["events"], "freshness", summary["freshness_seconds"]["user_activity"])
    assert summary["events"] == len(lake) and sum(summary["dead_letters"].values()) == 0

    # checked last, so the stream and lake assertions above run whatever the slates did
    moved = {u: now_.in_slate > was.in_slate and now_.best_slot < was.best_slot and now_.mean_rank < was.mean_rank
             for u, (was, now_) in placements.items()}
    if not all(moved.values()):
        unchanged = [u for u in USERS if before[u][1].item_ids == after[u][1].item_ids]
        online_now = {u: online.user_features(u).values["recent_category_keys"] for u in USERS}
        raise SlateDidNotReact(
            f"the viewed category did not rise for {[u for u, ok in moved.items() if not ok]} (full-catalog "
            f"ordering identical for {unchanged}) although the online store shows the views: {online_now}"
        )
