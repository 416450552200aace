"""Evaluating a (staged) release offline: its retrievers, and its ranked pipeline, on held-out days.

One stage of the release builder (:mod:`models.release`); the nightly gate compares the figures
(:mod:`orchestration.gate`). Everything it computes goes to the release's ``summary/evaluation.json``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.domains import domain as domain_config
from common.errors import DataError
from common.paths import DataPaths
from common.registry import CATALOG_FILE, RANKER_DIR, RETRIEVAL_DIR, ArtifactRegistry
from models.evaluation.lake_samples import evaluation_interactions
from models.release import ranker_frame, read_summaries, release_dir, write_summary

ORDER_EVAL_USERS = 500  # held-out users (a seeded sample) each retriever's and the ranked order are judged on


def evaluate_release(
    release: Path, interactions: pd.DataFrame, holdout_start: pd.Timestamp, holdout_end: pd.Timestamp,
    k: int = 100, paths: DataPaths | None = None, order_users: int = ORDER_EVAL_USERS, seed: int = 0,
) -> dict[str, Any]:
    """Offline metrics of a release on held-out interactions of ``[holdout_start, holdout_end]`` (users'
    histories = their interactions before ``holdout_start``; relevant = the domain's positive events).

    On every held-out user of ``interactions`` (the nightly tasks pass a seeded sample of at most
    :data:`models.evaluation.lake_samples.EVAL_USERS`, :func:`models.evaluation.lake_samples.evaluation_interactions`; ``held_out_users`` says of how many):
    ``recall@100``, the merged candidate set (each retriever's top-``k``);
    ``ndcg@10`` and ``recall@10``, the two-tower order. On a seeded sample of at most ``order_users`` of
    them, the orders a slate could take, by NDCG@10: each retriever alone (``collaborative_ndcg@10``,
    ``content_ndcg@10``, ``popularity_ndcg@10``; the best one is ``best_retriever`` /
    ``best_retriever_ndcg@10``) and the ranked pipeline (``ranked_ndcg@10``): the release's ranker
    scoring the merged candidates with their features as of ``holdout_start`` (:mod:`models.ranking.offline_features`:
    the offline sources and lake under ``paths``), completed from the popularity list.
    Adds the ranker's validation AUC (``ranker_auc``). Everything goes to ``summary/evaluation.json``."""
    from models.evaluation.evaluate import EvaluationContext, merged_recall
    from models.evaluation.split import build_ground_truth
    from models.retrieval.candidates import RETRIEVERS, evaluation_histories, retrieve
    from models.retrieval.export import load_retrievers

    held_out_users = interactions.attrs.get("held_out_users")  # before sampling (evaluation_interactions)
    interactions = interactions.assign(timestamp=pd.to_datetime(interactions["timestamp"], utc=True))
    catalog = pd.read_parquet(release / CATALOG_FILE)
    before = interactions[interactions["timestamp"] < holdout_start]
    held = interactions[(interactions["timestamp"] >= holdout_start) & (interactions["timestamp"] <= holdout_end)]
    domain = str(held["domain"].iloc[0]) if "domain" in held and len(held) else str(catalog["domain"].iloc[0])
    positives = list(domain_config(domain).positive_events) if "domain" in held and len(held) \
        else sorted(held["event_type"].unique())
    truth = build_ground_truth(held, before, catalog, positives)
    if len(truth.user_ids) == 0:
        raise DataError("no held-out user with a relevant interaction: cannot evaluate")
    histories, seen = evaluation_histories(before, truth.user_ids)
    top = min(k, len(catalog) - max(map(len, seen.values()), default=0))  # a small catalog: every unseen item
    candidates = retrieve(load_retrievers(release / RETRIEVAL_DIR), truth.user_ids, histories, seen, top)
    ten = min(10, top)
    context = EvaluationContext.build(truth, before, catalog, ten)
    metrics = context.evaluate(candidates.ids["collaborative"], ks=(ten,))
    out: dict[str, Any] = {f"recall@{k}": merged_recall(candidates.ids, truth, top),
                           "ndcg@10": float(metrics[f"ndcg@{ten}"]), "recall@10": float(metrics[f"recall@{ten}"]),
                           "eval_users": len(truth.user_ids),
                           "held_out_users": int(held_out_users if held_out_users is not None else len(truth.user_ids))}
    rng = np.random.default_rng(seed)
    sampled = np.zeros(len(truth.user_ids), dtype=bool)
    sampled[rng.choice(len(truth.user_ids), min(order_users, len(truth.user_ids)), replace=False)] = True
    sample, rows = context.restrict(users=sampled)
    orders = {name: candidates.ids[name][rows] for name in RETRIEVERS}
    ranked, missing = ranked_order(release, candidates, rows, before, catalog, domain, holdout_start,
                                   paths or DataPaths.default(), top)
    ndcg = {name: float(sample.evaluate(recs, ks=(ten,))[f"ndcg@{ten}"]) for name, recs in orders.items()}
    best = max(RETRIEVERS, key=ndcg.__getitem__)  # ties: the first in RETRIEVERS
    out.update({f"{name}_ndcg@10": value for name, value in ndcg.items()})
    out.update({"best_retriever": best, "best_retriever_ndcg@10": ndcg[best],
                "ranked_ndcg@10": float(sample.evaluate(ranked, ks=(ten,))[f"ndcg@{ten}"]),
                "order_eval_users": len(rows)})
    ranker = read_summaries(release).get(RANKER_DIR)
    if ranker is not None:
        out["ranker_auc"] = float(ranker["metrics"]["auc"])
    write_summary(release, "evaluation", {**out, "holdout": [str(holdout_start), str(holdout_end)],
                                          "ranker_features_without_source": missing})
    print(f"[release] held-out orders on {len(rows)} users, NDCG@10: ranked {out['ranked_ndcg@10']:.4f}, "
          + ", ".join(f"{name} {value:.4f}" for name, value in ndcg.items()), flush=True)
    return out


def ranked_order(
    release: Path, candidates: Any, rows: np.ndarray, before: pd.DataFrame, catalog: pd.DataFrame, domain: str,
    as_of: pd.Timestamp, paths: DataPaths, k: int,
) -> tuple[np.ndarray, list[str]]:
    """The release's ranker's order of the merged candidates of ``candidates``' users ``rows`` (a
    :class:`models.retrieval.candidates.CandidateSet`), features as of ``as_of``, each list completed to ``k`` from
    the user's popularity list. Also returns the ranker's features no source provides (scored as null)."""
    from models.ranking.candidate_ranker import history_rows, ranked_lists
    from models.ranking.data import feature_arrays
    from models.ranking.export import load_scorer
    from models.ranking.offline_features import history_of, last_devices, ranking_inputs

    scorer = load_scorer(release / RANKER_DIR, "fast")
    users = candidates.user_ids[rows]
    merged = [candidates.merged(int(row)) for row in rows]
    pairs = pd.DataFrame({"user_id": np.repeat(users, [len(m) for m in merged]).astype(object),
                          "item_id": np.asarray([item for m in merged for item in m], dtype=object)})
    mine = before[before["user_id"].isin(set(users))]
    lake_rows = history_rows(mine, catalog, domain) if len(mine) else {}
    categories = catalog.assign(item_id=catalog["item_id"].astype(str)).set_index("item_id")["category"]
    frame, missing = ranking_inputs(pairs, scorer.config.features, categories,
                                    history_of(paths, list(users), as_of, lake_rows), paths, as_of,
                                    last_devices(paths, domain, list(users), as_of))
    typed = ranker_frame(frame, scorer.config.numeric, scorer.config.categorical)
    scores = scorer.score(feature_arrays(typed, scorer.config)) if len(typed) else np.zeros(0, np.float32)
    fallback = dict(zip(users.tolist(), candidates.ids["popularity"][rows], strict=True))
    return ranked_lists(frame, scores, users, fallback, k), missing


def evaluate_on_days(domain: str, version: str, first: date, last: date, paths: DataPaths | None = None,
                     registry: ArtifactRegistry | None = None) -> dict[str, Any]:
    """:func:`evaluate_release` of a (staged) release on the lake's held-out days ``first``..``last``
    (a sample of their users, :func:`models.evaluation.lake_samples.evaluation_interactions`)."""
    paths = paths or DataPaths.default()
    start = pd.Timestamp(first, tz="UTC")
    end = pd.Timestamp(last, tz="UTC") + pd.Timedelta(days=1)
    return evaluate_release(release_dir(domain, version, registry), evaluation_interactions(paths, domain, start, end),
                            start, end, paths=paths)
