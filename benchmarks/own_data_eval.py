"""The own-data benchmark's scoring: the held-out ground truth, the served pipeline asked over HTTP, the
published release's retrievers alone, and EASE / popularity fitted on the data before the cut."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import report
from benchmarks.process_steps import Step, TreeMonitor, say, tail
from common.paths import REPO_ROOT

K = 10
READY_TIMEOUT_S = 900.0  # the service loads TensorFlow and the release; the machine is shared
HEADLINE = "with_history"
SLICES = (HEADLINE, "without_history")
METRICS = ("ndcg@10", "recall@10", "hit_rate@10")
NO_ITEM = "<no item>"  # the filler of a short served slate: in the scored vocabulary, never relevant


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def event_times(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True)


def cut_point(timestamps: pd.Series, holdout_fraction: float) -> pd.Timestamp:
    """The UTC midnight starting the day of the ``1 - holdout_fraction`` quantile of ``timestamps``."""
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"--holdout-fraction must be in (0, 1), got {holdout_fraction}")
    return event_times(timestamps).quantile(1.0 - holdout_fraction).floor("D")


# ---- evaluation --------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """The held-out ground truth and what every recommender is scored with."""

    domain: str
    positives: tuple[str, ...]
    before: pd.DataFrame  # pre-cut interactions (the domain's positive events, weighted)
    catalog: pd.DataFrame
    users: pd.DataFrame
    truth: Any  # models.evaluation.split.HeldOutTruth, every held-out user with a relevant item
    context: Any  # models.evaluation.evaluate.EvaluationContext of ``truth``
    has_history: np.ndarray
    facts: dict[str, Any]
    lists: dict[str, list[np.ndarray]] = field(default_factory=dict)  # recommender -> rounds of (n_users, K) ids

    @classmethod
    def build(cls, own: Path, heldout: Path, domain: str, relevant: str) -> Evaluation:
        from common.domains import domain as domain_config
        from models.evaluation.data import DomainData
        from models.evaluation.evaluate import EvaluationContext
        from models.evaluation.split import build_ground_truth

        config = domain_config(domain)
        positives = (config.conversion_event,) if relevant == "purchase" else tuple(config.positive_events)
        catalog, users = read_csv(own / "catalog.csv"), read_csv(own / "users.csv")
        before = DomainData.from_events(domain, read_csv(own / "events.csv"), catalog, users).interactions
        held = DomainData.from_events(domain, read_csv(heldout / "events.csv"), catalog, users).interactions
        known = held["item_id"].isin(set(catalog["item_id"]))
        late = held[~known & held["event_type"].isin(positives)]
        scored = pd.concat([catalog, pd.DataFrame({"item_id": [NO_ITEM], "category": [""]})], ignore_index=True)
        truth = build_ground_truth(held[known], before, scored, positives)
        has_history = np.isin(truth.user_ids, before["user_id"].unique())
        context = EvaluationContext.build(truth, before, scored, K)
        facts = {
            "relevant": f"held-out {'/'.join(positives)} events on pre-cut catalog items, items the user had "
                        "any event with before the cut excluded",
            "positive_events": list(positives),
            "users": {"evaluated": len(truth.user_ids), HEADLINE: int(has_history.sum()),
                      "without_history": int((~has_history).sum())},
            "relevant_pairs": int(truth.relevance.nnz),
            "heldout_positive_pairs_on_items_launched_after_the_cut (excluded)":
                int(late[["user_id", "item_id"]].drop_duplicates().shape[0]),
        }
        return cls(domain, positives, before, catalog, users, truth, context, has_history, facts)

    def histories(self) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
        from models.retrieval.candidates import evaluation_histories

        return evaluation_histories(self.before, self.truth.user_ids)

    def table(self) -> list[dict[str, Any]]:
        """One row per (recommender, slice): users and the metrics at K."""
        rows = []
        for name, lists in self.lists.items():
            for slice_name, mask in zip(SLICES, (self.has_history, ~self.has_history), strict=True):
                if not mask.any():
                    continue
                context, kept = self.context.restrict(users=mask)
                runs = [context.evaluate(recs[kept], ks=(K,)) for recs in lists]
                row = {"recommender": name, "slice": slice_name, "users": runs[0]["users"], "rounds": len(runs)}
                for metric in METRICS:
                    values = [float(run[metric]) for run in runs]
                    row[metric] = round(float(np.mean(values)), 4)
                    if len(values) > 1:
                        row[f"{metric}_range"] = [round(min(values), 4), round(max(values), 4)]
                rows.append(row)
        return rows


def _padded(slate: Sequence[str], catalog: set[str]) -> tuple[list[str], int]:
    """A served slate as exactly K ids: a short slate (or an id outside the catalog) is filled with
    :data:`NO_ITEM`, which is never relevant (a miss). Returns the list and how many places were filled."""
    items = [i for i in slate if i in catalog][:K]
    return items + [NO_ITEM] * (K - len(items)), K - len(items)


def serve_and_ask(evaluation: Evaluation, env: Mapping[str, str], log_dir: Path, version: str | None,
                  rounds: int, step: Step) -> None:
    """``recsys serving serve`` on a free loopback port, one ``POST /v1/recommendations`` per held-out user."""
    import httpx

    from loop.service import ServiceClient, free_port

    port = free_port()
    argv = [sys.executable, "-m", "cli", "serving", "serve", "--port", str(port), "--domains", evaluation.domain,
            "--log-level", "warning"]
    step.command = f"recsys serving serve --port {port} --domains {evaluation.domain}"
    log = log_dir / "serving.log"
    step.log = str(log)
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            with TreeMonitor(process.pid) as monitor:
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + READY_TIMEOUT_S
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(f"the service exited with code {process.returncode} before it was ready:\n"
                                           f"{tail(log)}")
                    try:
                        if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the service was not ready within {READY_TIMEOUT_S:.0f} s")
                    time.sleep(0.5)
                client = ServiceClient(url, env.get("RECSYS_API_KEY"))
                try:
                    if version is not None:
                        client.wait_for_releases({evaluation.domain: version}, timeout_s=READY_TIMEOUT_S)
                    step.details["ready_s"] = round(time.perf_counter() - started, 1)
                    step.details["releases"] = client.releases()
                    _ask(evaluation, client, step, rounds)
                finally:
                    client.close()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    step.resources = monitor.figures()


def _ask(evaluation: Evaluation, client: Any, step: Step, repeats: int) -> None:
    """Every held-out user ``repeats`` times (a new session each time): the slates differ through the
    exploration slots, so the served figures are the mean over the rounds (their range is reported)."""
    catalog = set(evaluation.catalog["item_id"])
    rounds, paths, releases, errors, latencies, filled = [], Counter(), Counter(), Counter(), [], 0
    for round_ in range(repeats):
        rows = []
        for user, warm in zip(map(str, evaluation.truth.user_ids), evaluation.has_history, strict=True):
            asked = time.perf_counter()
            try:
                slate = client.recommend(user, evaluation.domain, K, device="web", session_id=f"bench-{round_}-{user}")
            except Exception as err:  # an error answer is recorded and scored as an empty slate
                errors[type(err).__name__ + (f" {err.response.status_code}" if hasattr(err, "response") else "")] += 1
                items, short = _padded([], catalog)
            else:
                latencies.append((time.perf_counter() - asked) * 1000)
                paths[f"{SLICES[0] if warm else SLICES[1]}: {slate.path}"] += 1
                releases[slate.release] += 1
                items, short = _padded(slate.item_ids, catalog)
            filled += short
            rows.append(items)
        rounds.append(np.asarray(rows, dtype=object).reshape(len(rows), K))
    evaluation.lists["served"] = rounds
    asked_total = repeats * len(evaluation.truth.user_ids)
    step.details |= {"requests": asked_total, "rounds": repeats, "errors": dict(errors), "paths": dict(paths),
                     "releases": dict(releases), "slots_filled_as_misses (short slates, errors)": filled,
                     **({"client_latency": report.latency_ms(latencies)} if latencies else {})}
    if errors:
        raise RuntimeError(f"{sum(errors.values())} of {asked_total} requests failed: {dict(errors)}")


def published_release(artifacts: Path, domain: str) -> tuple[str | None, bool]:
    """The domain's CURRENT release, or else its newest finalized one (``published`` False); (None, False) if none."""
    from common.registry import ArtifactRegistry

    registry = ArtifactRegistry(artifacts)
    current = registry.current(domain)
    if current is not None:
        return current, True
    releases = registry.list_releases(domain)
    return (releases[-1].version, False) if releases else (None, False)


def release_facts(artifacts: Path, domain: str, version: str, published: bool) -> dict[str, Any]:
    from common.registry import ArtifactRegistry

    manifest = ArtifactRegistry(artifacts).load_manifest(domain, version)
    summaries = manifest.extra.get("summaries", {})
    ranker = summaries.get("ranker", {})
    return {
        "version": version, "published (CURRENT)": published, "created_at": manifest.created_at,
        "code_revision": manifest.code_revision, "training_window": manifest.training_window,
        "metrics": manifest.metrics,
        "ranker": {key: ranker.get(key) for key in ("ranking_data", "positives", "negatives", "train_rows", "valid_rows",
                                                     "position_correction", "structure", "metrics", "best_epoch")
                   if key in ranker},
        "summaries": sorted(summaries),
        **({"gate": manifest.extra["gate"]} if "gate" in manifest.extra else {}),
    }


def evaluate_retrievers(evaluation: Evaluation, artifacts: Path, version: str, step: Step) -> None:
    from common.registry import RETRIEVAL_DIR
    from models.retrieval.candidates import RETRIEVERS, retrieve
    from models.retrieval.export import load_retrievers

    retrievers = load_retrievers(artifacts / evaluation.domain / version / RETRIEVAL_DIR)
    histories, seen = evaluation.histories()
    candidates = retrieve(retrievers, evaluation.truth.user_ids, histories, seen, K)
    for name in RETRIEVERS:
        evaluation.lists[f"retriever:{name}"] = [candidates.ids[name]]
    step.details["own_candidates_mean"] = {name: round(float(candidates.found[name].mean()), 2) for name in RETRIEVERS}


def evaluate_baselines(evaluation: Evaluation, cut: pd.Timestamp, holdout_fraction: float, step: Step) -> None:
    """EASE (L2 tuned on a validation window: the last ``holdout_fraction`` of the pre-cut events, day-aligned)
    and popularity, both fitted on every pre-cut interaction."""
    from models.evaluation.baselines import EASERecommender, PopularityRecommender
    from models.evaluation.split import TemporalSplit
    from models.evaluation.tuning import grid_search

    before = evaluation.before
    validation_start = cut_point(before["timestamp"], holdout_fraction)
    early = before["timestamp"] < validation_start
    split = TemporalSplit(train=before, test=before.iloc[:0], fit=before[early], validation=before[~early],
                          validation_start=validation_start, test_start=cut, test_end=cut)
    step.details["ease"] = {"validation": [str(validation_start), str(cut)]}
    try:
        tuned = grid_search(EASERecommender, EASERecommender.search_space, split, evaluation.catalog, evaluation.users,
                            evaluation.positives, progress=say)
        params = tuned.params
        step.details["ease"] |= {"params": params, "grid": tuned.scores.to_dict("records")}
    except ValueError as err:  # a validation window without a warm user (a small sample): the default L2
        params = {}
        step.details["ease"] |= {"params": EASERecommender().params, "not_tuned": str(err)}
    users = evaluation.truth.user_ids
    for name, model in (("ease", EASERecommender(**params)), ("popularity", PopularityRecommender())):
        fitted = model.fit(before, evaluation.catalog, evaluation.users)
        evaluation.lists[name] = [fitted.recommend(users, K)]
