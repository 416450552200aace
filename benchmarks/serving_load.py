"""Serving load benchmark (issue 6): open-loop load on loopback, latency and throughput per request rate.

The service runs as ``--workers`` uvicorn processes on loopback ports, started exactly as the closed
loop starts it (:class:`loop.service.ServiceProcess`), serving the CURRENT release of a data root:
``--data-dir``/``--artifacts-dir``, or by default a scratch world built (once, then reused) by
:mod:`benchmarks.serving_world` -- a 5,000-item retail catalog, so ~500 distinct candidates exist. More
than one worker means several processes on their own ports with the generator spreading requests
round-robin, i.e. a client-side load balancer: each process's ``/metrics`` stays scrapeable (one
port shared by uvicorn workers would answer a scrape from a random worker).

Open loop: request ``n`` is due at ``offsets[n]`` (Poisson or uniform arrivals at the rate) whether or
not earlier ones were answered, and its latency is ``answer time - due time``, so queueing in the
generator, the kernel or the server counts (no coordinated omission). The generator is its own
process (:mod:`benchmarks.open_loop`); request bodies
are built before the run: real user ids of the world (``--unknown-share`` of them brand-new ids),
k=10, a device and a session per request. Every user gets the full pipeline (an experiments file without
experiments), so no request takes the legacy arm's shortcut.

Per rate the report has: sent / ok / errors, achieved throughput, p50/p95/p99/max, the share of
degraded answers (``retrieval_order`` / ``popularity_fallback``: not a success for the target) and, from
the deltas of every worker's Prometheus histograms (:mod:`benchmarks.prom_samples`), per-stage
latency (mean and bucket-interpolated p50/p95/p99), the candidates each retriever proposed and the candidates ranked per request, stage
failures, and the CPU seconds the server and the generator used (the machine is shared: the load
average is reported too).

Target: p99 <= 50 ms at 150 requests/s, no errors, no degraded answers, ~500 candidates ranked.
``python -m benchmarks.serving_load`` writes ``reports/bench/serving_load.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.open_loop import Outcome, open_loop_schedule, percentiles_ms, run_open_loop
from benchmarks.prom_samples import (
    Samples,
    add_samples,
    histogram_summary,
    metric_delta,
    select,
)
from benchmarks.report import REPORTS, write
from benchmarks.serving_requests import (
    CANDIDATES_PER_RETRIEVER,
    K,
    scrape,
    scrape_settled,
    world_requests,
    world_roots,
    write_settings,
)

OUT_FILE = REPORTS / "serving_load.json"
RATES = (50, 100, 150, 200)
SECONDS = 20.0
TARGET_RATE, TARGET_P99_MS, TARGET_CANDIDATES = 150, 50.0, 500
DEGRADED = ("retrieval_order", "popularity_fallback")
STAGES = ("user_features", "retrieval", "item_features", "ranking", "reranking", "total")
# Serving processes. Each is GIL-bound (~7 ms of CPU per request), and round-robin gives each its own
# queue: with two a burst queues behind one process while the other core idles. Four on two cores let
# the OS share both cores among the queues. Measured side by side at 150 req/s on a quiet machine:
# p99 44.4 / 31.9 ms with four vs 60.3 ms with two (about 0.8 GB of memory per process).
WORKERS = 4

# ---- summaries ----------------------------------------------------------------------------------


def summarize_outcomes(outcomes: Sequence[Outcome], rate: float, seconds: float) -> dict[str, Any]:
    """What the client saw: counts, achieved throughput, latency percentiles, paths, degraded share."""
    ok = [o for o in outcomes if o.status == "200"]
    errors = Counter(o.status for o in outcomes if o.status != "200")
    paths = Counter(o.path for o in ok)
    short = sum(o.items != K for o in ok)
    answered = [o.due + o.latency for o in outcomes if math.isfinite(o.latency)]
    span = max([seconds, *answered])  # from the first due time to the last answer
    degraded = sum(paths[p] for p in DEGRADED)
    return {
        "rate_target": rate,
        "seconds": seconds,
        "sent": len(outcomes),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "short_slates": short,
        "span_s": round(span, 3),
        "achieved_rps": round(len(ok) / span, 1) if span > 0 else 0.0,
        "latency_ms": percentiles_ms(o.latency for o in ok),
        "generator_lag_ms": percentiles_ms(o.lag for o in outcomes),
        "paths": dict(paths),
        "degraded_share": round(degraded / len(ok), 4) if ok else None,
    }


def server_summary(delta: Samples, domain: str) -> dict[str, Any]:
    """Per stage latency, candidates, paths, stage failures and HTTP statuses from a metrics delta."""
    stages = {stage: histogram_summary(delta, "recsys_stage_latency_seconds", 1000.0, domain=domain, stage=stage)
              for stage in STAGES}
    retrievers = sorted({k["retriever"] for k, _ in select(delta, "recsys_candidates_count", domain=domain)})
    ranked_paths = sorted({k["path"] for k, _ in select(delta, "recsys_ranked_candidates_count", domain=domain)})
    failures = {f"{k['stage']}:{k['kind']}": v for k, v in select(delta, "recsys_stage_failures_total", domain=domain)
                if v}
    return {
        "stage_ms": {stage: s for stage, s in stages.items() if s["count"]},
        "candidates_per_retriever": {r: histogram_summary(delta, "recsys_candidates", retriever=r, domain=domain)["mean"]
                                     for r in retrievers},
        "ranked_candidates": {p: _ranked(delta, domain, p) for p in ranked_paths},
        "paths": {k["path"]: v for k, v in select(delta, "recsys_serving_path_total", domain=domain) if v},
        "stage_failures": failures,
        "http": {f"{k['route']} {k['status']}": v for k, v in select(delta, "recsys_requests_total")
                 if v and k["route"] != "/metrics"},  # the benchmark's own scrapes are not load
    }


def _ranked(delta: Samples, domain: str, path: str) -> dict[str, float | None]:
    summary = histogram_summary(delta, "recsys_ranked_candidates", domain=domain, path=path)
    buckets = {float(k["le"]): v for k, v in select(delta, "recsys_ranked_candidates_bucket", domain=domain, path=path)}
    below = buckets.get(float(TARGET_CANDIDATES - 1), 0.0)
    full = (summary["count"] - below) / summary["count"] if summary["count"] else None
    return {"requests": summary["count"], "mean": summary["mean"],
            f"share_with_{TARGET_CANDIDATES}": None if full is None else round(full, 4)}


# ---- the service --------------------------------------------------------------------------------


def speed_probe_ms(repeats: int = 3) -> float:
    """CPU milliseconds of a fixed pure-Python workload (best of ``repeats``): the same code runs up to
    ~1.5x slower from one run to the next on this shared VM, so each rate records how fast the
    machine was, and runs can be compared."""
    best = math.inf
    for _ in range(repeats):
        started = time.process_time()
        sum(i * i for i in range(200_000))
        best = min(best, time.process_time() - started)
    return round(best * 1000.0, 2)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Service:
    urls: list[str]  # base URLs, one per worker process
    pids: list[int]


def start_service(stack: ExitStack, workers: int, domain: str, env: Mapping[str, str], serving_file: Path,
                  log_file: Path) -> Service:
    """``workers`` serving processes on free loopback ports, stopped when ``stack`` closes."""
    from loop.service import ServiceProcess

    processes = []
    for _ in range(workers):
        process = ServiceProcess([domain], env, serving_file, log_file)
        stack.callback(process.stop)
        processes.append(process)
    for process in processes:
        process.wait_ready()
    return Service([p.url for p in processes], [p.process.pid for p in processes])


def measure_rate(service: Service, domain: str, rate: float, seconds: float, bodies: list[bytes], arrivals: str,
                 timeout_s: float, rng: np.random.Generator, pool: ProcessPoolExecutor) -> dict[str, Any]:
    """One bounded open-loop run at ``rate``: the client's view plus the servers' metric deltas."""
    offsets = open_loop_schedule(rate, seconds, arrivals, rng)
    chosen = [bodies[i] for i in rng.integers(0, len(bodies), len(offsets))]
    urls = [f"{u}/v1/recommendations" for u in service.urls]
    probe = speed_probe_ms()
    with httpx.Client(timeout=30.0) as http:
        load_before = os.getloadavg()
        before = scrape(http, service.urls)
        cpu_before = [_cpu_seconds(p) for p in service.pids]
        outcomes, generator_cpu = pool.submit(run_open_loop, urls, chosen, offsets.tolist(), timeout_s).result()
        server_cpu = sum(_cpu_seconds(p) for p in service.pids) - sum(cpu_before)
        after = scrape_settled(http, service.urls, before, sum(o.status.isdigit() for o in outcomes))
    result = summarize_outcomes(outcomes, rate, seconds)
    result["server"] = server_summary(add_samples(metric_delta(b, a) for b, a in zip(before, after, strict=True)),
                                      domain)
    wall = result["span_s"]
    result["cpu"] = {"server_seconds": round(server_cpu, 2), "generator_seconds": round(generator_cpu, 2),
                     "server_cores": round(server_cpu / wall, 2), "generator_cores": round(generator_cpu / wall, 2),
                     "server_ms_per_request": round(1000.0 * server_cpu / max(result["ok"], 1), 2)}
    result["load_average"] = {"before": [round(x, 2) for x in load_before],
                              "after": [round(x, 2) for x in os.getloadavg()]}
    result["speed_probe_ms"] = probe
    return result


def meets_target(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The issue's bar at :data:`TARGET_RATE`: p99, no errors, no degraded answers, ~500 candidates ranked."""
    at = next((r for r in results if r["rate_target"] == TARGET_RATE), None)
    if at is None:
        return {"measured": False, "met": False}
    ranked = at["server"]["ranked_candidates"].get("full", {})
    checks = {
        "p99_ms": at["latency_ms"]["p99"],
        "p99_ok": at["latency_ms"]["p99"] is not None and at["latency_ms"]["p99"] <= TARGET_P99_MS,
        "no_errors": at["errors"] == 0 and at["short_slates"] == 0,
        "no_degraded": at["degraded_share"] is not None and at["degraded_share"] <= 0.001,
        "candidates_ranked_full_path": ranked.get("mean"),
        "candidates_ok": (ranked.get("mean") or 0) >= 0.95 * TARGET_CANDIDATES,
    }
    checks["met"] = all(checks[k] for k in ("p99_ok", "no_errors", "no_degraded", "candidates_ok"))
    return {"measured": True, **checks}


# ---- the benchmark ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    rates: tuple[float, ...] = RATES
    seconds: float = SECONDS
    warmup_seconds: float = 8.0
    warmup_rate: float = 50.0
    domain: str = "retail"
    workers: int = WORKERS
    arrivals: str = "poisson"
    unknown_share: float = 0.1
    candidates_per_retriever: int = CANDIDATES_PER_RETRIEVER
    timeout_s: float = 10.0
    seed: int = 0


def run(options: Options, data_root: Path, artifacts_root: Path, work: Path) -> dict[str, Any]:
    """Start the service on the data root, warm it up, then one bounded run per rate; the report."""
    rng = np.random.default_rng(options.seed)
    serving_file, env = write_settings(work, options.candidates_per_retriever, data_root, artifacts_root)
    _, bodies = world_requests(data_root, options.domain, options.unknown_share, rng)
    started = time.time()
    load_at_start = os.getloadavg()
    results = []
    with ExitStack() as stack:
        service = start_service(stack, options.workers, options.domain, env, serving_file, work / "service.log")
        pool = stack.enter_context(ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")))
        warmup = measure_rate(service, options.domain, options.warmup_rate, options.warmup_seconds, bodies,
                              options.arrivals, options.timeout_s, rng, pool)
        print(f"warm-up: {warmup['ok']}/{warmup['sent']} ok, p99 {warmup['latency_ms']['p99']} ms", flush=True)
        for rate in options.rates:
            results.append(measure_rate(service, options.domain, rate, options.seconds, bodies, options.arrivals,
                                        options.timeout_s, rng, pool))
            print(format_row(options.workers, results[-1]), flush=True)
    return {
        "benchmark": "serving_load",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "options": {**options.__dict__, "rates": list(options.rates)},
        "data_root": str(data_root),
        "artifacts_root": str(artifacts_root),
        "release": _current(artifacts_root, options.domain),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load_at_start],  # the 2 cores are shared with other work
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "warmup": {k: warmup[k] for k in ("sent", "ok", "errors", "latency_ms", "paths")},
        "rates": results,
        "target": {"rate": TARGET_RATE, "p99_ms": TARGET_P99_MS, "candidates": TARGET_CANDIDATES},
        "meets_target": meets_target(results),
    }


def _current(artifacts_root: Path, domain: str) -> str | None:
    from common.registry import ArtifactRegistry

    return ArtifactRegistry(artifacts_root).current(domain)


HEADER = (f"{'workers':>7} {'rate':>5} {'sent':>5} {'ok':>5} {'err':>4} {'rps':>6} {'p50':>6} {'p95':>6} "
          f"{'p99':>6} {'max':>7} {'degr%':>6} {'ranked':>6} {'srv_cpu':>7} {'ms/req':>6} {'gen_cpu':>7} "
          f"{'load1':>5} {'probe':>5}")


LEGEND = ("latency in ms from the scheduled send; degr%: answers on a degraded path; ranked: candidates ranked "
          "per full-path request; srv_cpu/gen_cpu: cores used by the servers/generator; ms/req: server CPU per "
          "answer; load1: load average after the rate; probe: CPU ms of a fixed Python workload (machine speed)")


def format_row(workers: int, r: Mapping[str, Any]) -> str:
    lat = r["latency_ms"]
    ranked = r["server"]["ranked_candidates"].get("full", {}).get("mean")

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    degraded = "-" if r["degraded_share"] is None else f"{100 * r['degraded_share']:.1f}"
    return (f"{workers:>7} {r['rate_target']:>5g} {r['sent']:>5} {r['ok']:>5} {r['errors']:>4} {r['achieved_rps']:>6} "
            f"{ms(lat['p50']):>6} {ms(lat['p95']):>6} {ms(lat['p99']):>6} {ms(lat['max']):>7} {degraded:>6} "
            f"{ms(ranked):>6} {r['cpu']['server_cores']:>7} {r['cpu']['server_ms_per_request']:>6} "
            f"{r['cpu']['generator_cores']:>7} {r['load_average']['after'][0]:>5} {r['speed_probe_ms']:>5}")


def format_stages(r: Mapping[str, Any]) -> str:
    lines = [f"  rate {r['rate_target']:g}: stage (ms)    mean    p50    p95    p99"]
    for stage, s in r["server"]["stage_ms"].items():
        values = " ".join("     -" if s[k] is None else f"{s[k]:6.2f}" for k in ("mean", "p50", "p95", "p99"))
        lines.append(f"    {stage:<16} {values}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_load", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="data root to serve (lake users + online store; the "
                        "service logs impressions into its incoming/); default: a scratch world built under "
                        "--work-dir (reused when it exists)")
    parser.add_argument("--artifacts-dir", type=Path, help="artifacts root with a promoted release "
                        "(required with --data-dir)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "recsys-serving-load",
                        help="scratch directory: the default world, settings variants, service log")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES), help="request rates (requests/s)")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="load duration per rate (bounded)")
    parser.add_argument("--warmup-seconds", type=float, default=8.0, help="unreported warm-up at 50 requests/s "
                        "(TensorFlow functions traced, caches and connections warm)")
    parser.add_argument("--domain", default="retail", help="domain to request (the scratch world is retail only)")
    parser.add_argument("--workers", type=int, default=WORKERS, help="serving processes (one uvicorn worker each, "
                        "own port; requests spread round-robin)")
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson", help="open-loop arrivals")
    parser.add_argument("--unknown-share", type=float, default=0.1, help="share of requests from never-seen user ids")
    parser.add_argument("--candidates-per-retriever", type=int, default=CANDIDATES_PER_RETRIEVER,
                        help="serving setting of the variant the service runs with (so ~500 merged candidates)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout (s); a timeout is an error")
    parser.add_argument("--world-items", type=int, default=5_000, help="catalog size of the scratch world")
    parser.add_argument("--world-users", type=int, default=4_000, help="users of the scratch world")
    parser.add_argument("--rebuild-world", action="store_true", help="rebuild the scratch world even if it exists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUT_FILE, help="JSON report")
    args = parser.parse_args(argv)

    if args.data_dir is None and args.domain != "retail":
        parser.error("the scratch world is retail only: pass --data-dir/--artifacts-dir to serve another domain")
    data_root, artifacts_root = world_roots(parser, args, rebuild=args.rebuild_world, items=args.world_items,
                                            users=args.world_users)
    options = Options(rates=tuple(args.rates), seconds=args.seconds, warmup_seconds=args.warmup_seconds,
                      domain=args.domain, workers=args.workers, arrivals=args.arrivals,
                      unknown_share=args.unknown_share, candidates_per_retriever=args.candidates_per_retriever,
                      timeout_s=args.timeout, seed=args.seed)
    print(HEADER, flush=True)
    report = run(options, data_root, artifacts_root, args.work_dir / f"run-{os.getpid()}")
    if args.data_dir is None:  # the scratch world keeps no served impressions: it would only grow
        import shutil

        shutil.rmtree(data_root / "incoming", ignore_errors=True)
    print(HEADER)
    for r in report["rates"]:
        print(format_row(options.workers, r))
    print(LEGEND)
    for r in report["rates"]:
        print(format_stages(r))
    print(json.dumps({"meets_target": report["meets_target"]}))
    write(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
