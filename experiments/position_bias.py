"""Position-bias experiment on the synthetic world, where the true relevance of every (user, item) is known.

The same ranking set (the Spark job's logged impressions, ``paths.training(domain, "ranking")``), the
same features, split and seed train two rankers: one with the position tower (position-bias
correction, served without it) and one without. Each then re-orders the held-out slates (the latest
``test_fraction`` of the impressions, whole requests), and NDCG@10 is computed against TRUE relevance
(``simulation.truth.GroundTruth.relevance``: P(click | examined)), with the logged order and a random
order as references. The clicks the rankers learn from are confounded by position
(examination = 1 / position ** eta); the truth is not.

Memory: only the columns the rankers read are loaded, an optional seeded sample of whole requests is
taken before anything is converted, and the NDCG is vectorised (no per-request Python loop). The
ranker's input pipeline (:func:`models.ranking.data.batched_dataset`) keeps no per-row shuffle buffer;
that buffer was what pushed this experiment to ~20 GB RSS on the demo world.

    python -m experiments.position_bias --data-dir /path/to/data --domain retail --out retail.json

Observed on the demo world's own log (every request, stacked DCN, world seed 42, one training seed),
with the logging policy that shows slates best score first (issue 17; Spearman of position vs true
relevance in the test slates -0.396 retail, -0.132 banking): retail corrected 0.8710 vs uncorrected
0.8713, gain -0.0004 [-0.0011, +0.0004] -- none; banking corrected 0.8718 vs 0.8567, gain +0.0151
[+0.0133, +0.0168]. (Banking's truth is the needs at the end of the generated period, so slates of
customers whose life events fell in the test days are judged with their later needs.) Before that
change the policy kept the sampling order (Spearman -0.001 / -0.019) and neither domain gained beyond
the training-seed spread; on a counterfactual log of those slates that a margin-boosting policy
ordered (``--relog-by margin``) the correction gained +0.024 (retail) and +0.026 (banking).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.features import EVENT_TIMESTAMP
from common.paths import DataPaths
from models.release import ranker_frame

K = 10
SLATE_KEYS = ("request_id", "user_id", "item_id", EVENT_TIMESTAMP, "position", "clicked", "converted")

Relevance = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (user ids, item ids) -> P(click | examined)
Progress = Callable[[str], None]


def _rank_in_group(sorted_codes: np.ndarray) -> np.ndarray:
    """0-based rank of each row within its run of equal codes (``sorted_codes`` grouped by code)."""
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    return np.arange(len(sorted_codes)) - np.repeat(starts, np.diff(np.r_[starts, len(sorted_codes)]))


def request_ndcg(frame: pd.DataFrame, scores: np.ndarray, gains: np.ndarray, k: int = K) -> np.ndarray:
    """Per request (in order of first appearance): DCG@k of its items ordered by ``scores`` / its ideal DCG@k;
    NaN where the ideal DCG is 0.

    Vectorised: rows are sorted by (request, -score) and by (request, -gain) once, each row's rank in
    its request gives its discount, and ``bincount`` sums the DCGs per request. Ties in ``scores`` keep
    the frame's row order (stable sort)."""
    codes, uniques = pd.factorize(frame["request_id"], sort=False)
    scores, gains = np.asarray(scores, np.float64), np.asarray(gains, np.float64)
    by_score = np.lexsort((-scores, codes))  # the last key is the primary one; lexsort is stable
    by_gain = np.lexsort((-gains, codes))
    sorted_codes = codes[by_score]  # the same sequence for both orders
    rank = _rank_in_group(sorted_codes)
    discount = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    dcg = np.bincount(sorted_codes, weights=gains[by_score] * discount, minlength=len(uniques))
    ideal = np.bincount(sorted_codes, weights=gains[by_gain] * discount, minlength=len(uniques))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, dcg / ideal, np.nan)


def slate_ndcg(frame: pd.DataFrame, scores: np.ndarray, gains: np.ndarray, k: int = K) -> float:
    """Mean over requests of DCG@k of the items ordered by ``scores`` / the ideal DCG@k of the same items
    (requests whose ideal DCG is 0 are left out)."""
    return float(np.nanmean(request_ndcg(frame, scores, gains, k)))


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, draws: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of mean(a - b) over requests resampled with replacement (the same requests for both)."""
    diff = (a - b)[~(np.isnan(a) | np.isnan(b))]
    rng = np.random.default_rng(seed)
    means = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(draws)])
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half)."""
    labels = np.asarray(labels) > 0
    ranks = pd.Series(np.asarray(scores, np.float64)).rank().to_numpy()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def split_requests(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(earlier, later): requests whose first impression is in the latest ``fraction`` of time go later."""
    start = frame.groupby("request_id")[EVENT_TIMESTAMP].transform("min")
    cut = start.quantile(1.0 - fraction)
    return frame[start <= cut], frame[start > cut]


def relog_slates(frame: pd.DataFrame, by: str, relevance: Relevance, eta: float, seed: int = 0,
                 noise: float = 1.0) -> pd.DataFrame:
    """A COUNTERFACTUAL log of the same slates, for the investigation only: each request's items re-ordered
    by the standardised feature ``by`` plus ``noise`` x N(0, 1) (descending; a legacy policy that boosts
    ``by``), and every click redrawn from the world's truth, ``Bernoulli(position ** -eta * relevance)``.

    The demo world's own logging policy orders a slate almost independently of its items' relevance and
    features (see :func:`position_diagnostics`), so position confounds nothing there; this puts a known
    confounder into the same users, items, features and split, so the correction has something to undo.
    ``converted`` is not redrawn (the experiment does not read it)."""
    rng = np.random.default_rng(seed)
    values = frame[by].to_numpy(np.float64)
    spread = np.nanstd(values)
    key = np.nan_to_num((values - np.nanmean(values)) / (spread if spread > 0 else 1.0))
    key = key + noise * rng.standard_normal(len(frame))
    codes = pd.factorize(frame["request_id"], sort=False)[0]
    order = np.lexsort((-key, codes))
    position = np.empty(len(frame), np.int64)
    position[order] = _rank_in_group(codes[order]) + 1
    truth = relevance(frame["user_id"].to_numpy(), frame["item_id"].to_numpy())
    clicked = rng.random(len(frame)) < position.astype(np.float64) ** -eta * truth
    return frame.assign(position=position.astype(frame["position"].dtype), clicked=clicked.astype(np.int64))


def load_ranking_set(source: Path, features: Sequence[str], sample_requests: int | None = None,
                     seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The slate keys and the ``features`` present in the ranking set at ``source``, and what was sampled.

    With ``sample_requests``, a uniform sample (``numpy.random.default_rng(seed)``, without replacement,
    over the sorted request ids) of that many WHOLE requests is kept, filtered in Arrow before any
    pandas conversion; ``sample`` then says so."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(source), format="parquet", partitioning="hive")
    present = set(dataset.schema.names)
    columns = [c for c in (*SLATE_KEYS, *features) if c in present]
    requests = pc.unique(dataset.to_table(columns=["request_id"])["request_id"]).sort()
    sample: dict[str, Any] = {"requests": len(requests), "of_requests": len(requests), "seed": None,
                              "method": "all requests"}
    row_filter = None
    if sample_requests is not None and sample_requests < len(requests):
        chosen = np.sort(np.random.default_rng(seed).choice(len(requests), sample_requests, replace=False))
        row_filter = pc.field("request_id").isin(requests.take(chosen))
        sample = {"requests": int(sample_requests), "of_requests": len(requests), "seed": seed,
                  "method": "uniform sample of whole requests (numpy default_rng(seed) over sorted request ids)"}
    frame = dataset.to_table(columns=columns, filter=row_filter).to_pandas()
    return frame, sample


def _truth_relevance(paths: DataPaths, domain: str) -> tuple[Relevance, dict[str, float]]:
    from simulation.truth import GroundTruth

    truth = GroundTruth.load(paths, domain)
    return truth.relevance, dict(truth.params)


def position_diagnostics(test: pd.DataFrame, gains: np.ndarray, train: pd.DataFrame,
                         offsets: np.ndarray | None, eta: float | None) -> dict[str, Any]:
    """What the correction can gain: per logged position, the click rate (train), the mean TRUE relevance of
    the items the logging policy put there (test: a flat curve means position and relevance are barely
    confounded), and the position tower's learned logit offsets next to the world's log-examination
    ``-eta * ln(position)`` (both relative to position 1)."""
    positions = np.sort(test["position"].unique())
    by_position = pd.Series(gains).groupby(test["position"].to_numpy()).mean()
    out: dict[str, Any] = {
        "positions": positions.tolist(),
        "train_click_rate": train.groupby("position")["clicked"].mean().reindex(positions).round(5).tolist(),
        "test_mean_true_relevance": by_position.reindex(positions).round(5).tolist(),
        "spearman_position_vs_true_relevance": float(
            pd.Series(test["position"].to_numpy()).corr(pd.Series(gains), method="spearman")),
    }
    if offsets is not None:
        learned = offsets[np.clip(positions, 0, len(offsets) - 1)]
        out["learned_position_offset"] = np.round(learned - learned[0], 4).tolist()
    if eta is not None:
        out["true_log_examination"] = np.round(-eta * np.log(positions / positions[0]), 4).tolist()
    return out


def position_bias_experiment(paths: DataPaths, domain: str, test_fraction: float = 0.25, valid_fraction: float = 0.15,
                             config: Any = None, verbose: bool = False, *, sample_requests: int | None = None,
                             seed: int = 0, relevance: Relevance | None = None,
                             progress: Progress | None = None, relog_by: str | None = None,
                             relog_noise: float = 1.0) -> dict[str, Any]:
    """Corrected vs uncorrected ranker, NDCG@10 against true relevance on held-out slates (one run).

    ``sample_requests``: train and test on a seeded sample of that many whole requests (see
    :func:`load_ranking_set`; recorded under ``sample``). ``relevance``: the true P(click | examined) of
    (user ids, item ids); default the world's :class:`simulation.truth.GroundTruth` under ``paths``.
    ``progress`` receives one line per step. ``relog_by``: run on the counterfactual log of
    :func:`relog_slates` instead of the logged positions and clicks (needs the world's truth; recorded
    under ``relog``).

    ``validation_auc`` is the early-stopping metric, computed in training mode (the corrected ranker WITH
    its position tower), so it is not comparable between the two; ``validation_auc_serving`` scores the
    validation clicks with the served model (no position) for both. ``gain_ci95``: paired bootstrap
    interval of the NDCG gain over test requests (it covers the test sample, not the training seed)."""
    from models.ranking.config import RankerConfig
    from models.ranking.train import train_ranker

    say = progress or (lambda _line: None)
    base = config or RankerConfig(structure="stacked")
    started = time.perf_counter()
    wanted = [*base.features, *([relog_by] if relog_by and relog_by not in base.features else [])]
    raw, sample = load_ranking_set(paths.training(domain, "ranking"), wanted, sample_requests, seed)
    numeric = [n for n in base.numeric if n in raw.columns]
    categorical = [n for n in base.categorical if n in raw.columns]
    base = replace(base, numeric=numeric, categorical=categorical, log1p=[n for n in base.log1p if n in numeric])
    frame = ranker_frame(raw, numeric, categorical)
    del raw
    params: dict[str, float] = {}
    if relevance is None:
        relevance, params = _truth_relevance(paths, domain)
    relog = None
    if relog_by is not None:
        if "eta" not in params:
            raise ValueError("relog_by needs the world's truth (its examination exponent eta)")
        frame = relog_slates(frame, relog_by, relevance, params["eta"], seed, relog_noise)
        relog = {"by": relog_by, "noise": relog_noise, "eta": params["eta"], "seed": seed,
                 "note": "COUNTERFACTUAL log: slates re-ordered by the feature + noise, clicks redrawn from the truth"}
        say(f"counterfactual log: slates re-ordered by {relog_by} (+ {relog_noise} x N(0,1)), clicks redrawn")
    earlier, test = split_requests(frame, test_fraction)
    train, valid = split_requests(earlier, valid_fraction)
    del frame, earlier
    say(f"{domain}: {sample['requests']:,} of {sample['of_requests']:,} requests; train {len(train):,}, "
        f"valid {len(valid):,}, test {len(test):,} impressions; {len(numeric)} numeric + "
        f"{len(categorical)} categorical features")
    gains = relevance(test["user_id"].to_numpy(), test["item_id"].to_numpy())
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {
        "domain": domain, "sample": sample, "relog": relog,
        "train_impressions": len(train), "valid_impressions": len(valid), "test_impressions": len(test),
        "train_requests": int(train["request_id"].nunique()), "test_requests": int(test["request_id"].nunique()),
        "click_rate": float(train["clicked"].mean()),
        "ndcg@10_true": {"logged_order": slate_ndcg(test, -test["position"].to_numpy(float), gains),
                         "random_order": slate_ndcg(test, rng.random(len(test)), gains)},
        "validation_auc": {}, "validation_auc_serving": {}, "best_epoch": {}, "fit_seconds": {},
        "config": {"structure": base.structure, "epochs": base.epochs, "patience": base.patience,
                   "batch_size": base.batch_size, "learning_rate": base.learning_rate, "seed": base.seed,
                   "max_position": base.max_position},
    }
    say(f"NDCG@10 vs true relevance: logged order {out['ndcg@10_true']['logged_order']:.4f}, "
        f"random {out['ndcg@10_true']['random_order']:.4f}")
    offsets, per_request = None, {}
    for corrected in (True, False):
        name = "corrected" if corrected else "uncorrected"
        say(f"training the {name} ranker on {len(train):,} impressions")
        fit_started = time.perf_counter()
        trained = train_ranker(train, valid, replace(base, position_correction=corrected), verbose=verbose)
        out["fit_seconds"][name] = round(time.perf_counter() - fit_started, 1)
        per_request[name] = request_ndcg(test, trained.predict(test)["score"], gains)
        out["ndcg@10_true"][name] = float(np.nanmean(per_request[name]))
        out["validation_auc"][name] = trained.metrics["auc"]
        out["validation_auc_serving"][name] = roc_auc(valid["clicked"].to_numpy(), trained.predict(valid)["score"])
        out["best_epoch"][name] = trained.best_epoch
        if trained.model.position_tower is not None:
            offsets = trained.model.position_tower.bias.embeddings.numpy().ravel()
        say(f"{name}: NDCG@10 {out['ndcg@10_true'][name]:.4f}, validation AUC {trained.metrics['auc']:.4f} "
            f"(served, no position: {out['validation_auc_serving'][name]:.4f}), "
            f"best epoch {trained.best_epoch}, {out['fit_seconds'][name]:.0f} s")
        del trained
    out["gain"] = out["ndcg@10_true"]["corrected"] - out["ndcg@10_true"]["uncorrected"]
    out["gain_ci95"] = paired_bootstrap_ci(per_request["corrected"], per_request["uncorrected"], seed=seed)
    out["diagnostics"] = position_diagnostics(test, gains, train, offsets, params.get("eta"))
    if params:
        out["world_eta"] = params.get("eta")
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.position_bias",
        description="Position-bias experiment on a synthetic world: train the same DCN ranker with and without "
                    "the position tower on the same ranking set, and print/write NDCG@10 of the held-out "
                    "slates against the world's TRUE relevance (plus logged and random order, validation AUCs, "
                    "peak RSS and seconds).")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="data root holding training/<domain>/ranking and world/<domain> (read only)")
    parser.add_argument("--domain", required=True, choices=("retail", "banking"), help="synthetic domain")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON to this file")
    parser.add_argument("--sample-requests", type=int, default=None,
                        help="use a seeded uniform sample of N whole requests (default: every request)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request sample and the random order")
    parser.add_argument("--train-seed", type=int, default=None,
                        help="seed of both rankers' initialisation and shuffling (default: the config's)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs per ranker (default: config's)")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="latest share of requests held out")
    parser.add_argument("--valid-fraction", type=float, default=0.15,
                        help="latest share of the remaining requests for early stopping")
    parser.add_argument("--relog-by", default=None, metavar="FEATURE",
                        help="investigation: a counterfactual log where each slate is re-ordered by FEATURE "
                             "(+ noise) and clicks are redrawn from the world's truth (e.g. margin)")
    parser.add_argument("--relog-noise", type=float, default=1.0,
                        help="standard deviation of the noise added to the standardised FEATURE")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch Keras lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    paths = DataPaths(args.data_dir.resolve())
    if not paths.training(args.domain, "ranking").exists():
        print(f"no ranking set at {paths.training(args.domain, 'ranking')}", file=sys.stderr)
        return 2
    from models.ranking.config import RankerConfig

    started = time.perf_counter()

    def say(line: str) -> None:
        print(f"[position-bias {time.perf_counter() - started:7.1f}s, peak RSS {peak_rss_gb():.2f} GB] {line}",
              flush=True)

    config = RankerConfig(structure="stacked")
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.train_seed is not None:
        config = replace(config, seed=args.train_seed)
    result = position_bias_experiment(paths, args.domain, args.test_fraction, args.valid_fraction, config,
                                      verbose=not args.quiet, sample_requests=args.sample_requests,
                                      seed=args.seed, progress=say, relog_by=args.relog_by,
                                      relog_noise=args.relog_noise)
    result["peak_rss_gb"] = round(peak_rss_gb(), 2)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
