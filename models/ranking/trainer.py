"""The ranker's trainer: its own process, streaming a shard directory, on one worker or several.

    python -m models.ranking.trainer --shards DIR --config CONFIG.json --out RANKER_DIR [--tensorboard DIR]

It reads the shards written by Spark (:mod:`models.ranking.shards`) through ``tf.data``, so its memory
does not grow with the training set, fits the preprocessing on every training shard, trains the DCN
ranker (:func:`models.ranking.train.train_ranker`) and exports it (SavedModel + fast export) into
``--out``, with ``trained.json`` (metrics, structure comparison, best epoch, and the two exports'
``parity``: both loaded back and scored on validation rows, here where TensorFlow is already loaded, so
the launcher that reads the result need not import it).

Several workers: when ``TF_CONFIG`` names more than one worker, the trainer runs under
``tf.distribute.MultiWorkerMirroredStrategy``: each worker reads its own shards (every N-th one), the
global batch is the config's ``batch_size`` split among the workers, gradients are all-reduced every
step, and every worker runs the same number of steps per epoch (the smallest worker's share). Worker 0
(the chief) writes the export; the others export into a scratch directory, as the strategy requires.
:func:`launch_local` starts N workers on this machine (``--workers N`` of the launcher); on a cluster
each node runs this module with its own ``TF_CONFIG``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

TRAINED_FILE = "trained.json"


def cluster() -> tuple[int, int]:
    """``(workers, index)`` from ``TF_CONFIG`` (``(1, 0)`` without one)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 1, 0
    spec = json.loads(raw)
    workers = len(spec.get("cluster", {}).get("worker", [])) or 1
    return workers, int(spec.get("task", {}).get("index", 0))


def train_from_shards(shards_dir: Path, config_json: dict[str, Any], out: Path, tensorboard: Path | None = None,
                      verbose: bool = True) -> dict[str, Any]:
    """Train and export as the module docstring says; returns what ``trained.json`` holds."""
    workers, index = cluster()
    from models.keras2 import tf

    # the strategy first: it sets up the collective runtime before any other TensorFlow op
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if workers > 1 else None
    from models.ranking.config import RankerConfig
    from models.ranking.encoder import fit_preprocessing
    from models.ranking.export import export_ranker
    from models.ranking.shards import TRAIN, VALID, ShardSet, file_rows, shard_dataset, worker_files
    from models.ranking.train import Distribution, train_ranker

    config = RankerConfig(**config_json)
    shards = ShardSet.load(shards_dir)
    train_files, valid_files = shards.files(TRAIN), shards.files(VALID)
    if not train_files or not valid_files:
        raise ValueError(f"{shards_dir} needs training and validation shards")
    stats = fit_preprocessing(shard_dataset(train_files, config, 4096), config)  # the same on every worker
    batch = max(1, config.batch_size // workers)  # per worker (one replica each): the global batch is the config's
    train_parts = [worker_files(train_files, workers, w) for w in range(workers)]
    valid_parts = [worker_files(valid_files, workers, w) for w in range(workers)] if len(valid_files) >= workers \
        else [valid_files] * workers  # too few to split: every worker validates on all of them
    steps = max(1, min(map(file_rows, train_parts)) // batch)
    valid_steps = max(1, min(map(file_rows, valid_parts)) // batch)
    if verbose:
        print(f"[trainer] worker {index + 1}/{workers}: {len(train_parts[index])} training shard(s), batch {batch} "
              f"per worker, {steps} steps per epoch, {valid_steps} validation steps", flush=True)

    def distributed(parts: list[list[Path]], shuffle: bool) -> Any:
        """Each worker's input pipeline reads its own shards, in batches of the per-replica size."""
        def make(context: tf.distribute.InputContext) -> tf.data.Dataset:
            return shard_dataset(parts[context.input_pipeline_id], config,
                                 context.get_per_replica_batch_size(config.batch_size), shuffle=shuffle,
                                 repeat=True, seed=config.seed)
        return strategy.distribute_datasets_from_function(make)

    if strategy is None:
        train_ds = shard_dataset(train_files, config, batch, shuffle=True, repeat=True, seed=config.seed)
        valid_ds = shard_dataset(valid_files, config, batch, repeat=True)
    else:
        train_ds, valid_ds = distributed(train_parts, shuffle=True), distributed(valid_parts, shuffle=False)
    chief = index == 0
    trained = train_ranker(train_ds, valid_ds, config, tensorboard_dir=tensorboard if chief else None,
                           verbose=verbose and chief, stats=stats,
                           distribution=Distribution(strategy, steps_per_epoch=steps, validation_steps=valid_steps))
    if chief:  # on every validation row, whatever the workers' shares (Keras' figures are per worker)
        trained.comparison[trained.config.structure] = trained.metrics = validation_metrics(
            trained.model, shard_dataset(valid_files, config, 4096), config)
    target = out if chief else Path(tempfile.mkdtemp(prefix=f"recsys-trainer-{index}-"))
    try:
        export_ranker(trained, target)
    finally:
        if not chief:
            shutil.rmtree(target, ignore_errors=True)
    result = {"config": asdict(trained.config), "metrics": trained.metrics, "comparison": trained.comparison,
              "best_epoch": trained.best_epoch, "workers": workers, "steps_per_epoch": steps,
              "history": trained.history}
    if chief:
        result["parity"] = export_parity(out, valid_files)
        (out / TRAINED_FILE).write_text(json.dumps(result, indent=1, default=str))
    return result


def export_parity(out: Path, valid_files: Sequence[Path]) -> dict[str, Any]:
    """Both exports in ``out``, loaded back from disk, scoring the first validation rows:
    :func:`models.ranking.scoring.compare_scores` (``agree`` False: the fast export is not the model)."""
    from models.ranking.data import feature_arrays
    from models.ranking.export import load_scorer
    from models.ranking.scoring import compare_scores
    from models.ranking.shards import probe_frame

    fast = load_scorer(out, "fast")
    probe = feature_arrays(probe_frame(valid_files), fast.config)
    return compare_scores(load_scorer(out, "saved_model").score(probe), fast.score(probe))


def validation_metrics(model: Any, data: Any, config: Any) -> dict[str, float]:
    """The ranker's validation figures (training mode: with the position tower) over every batch of ``data``."""
    from models.keras2 import tf
    from models.ranking.config import CLICK_LABEL, CONVERSION_LABEL

    metrics = {"auc": tf.keras.metrics.AUC(from_logits=True),
               "logloss": tf.keras.metrics.BinaryCrossentropy(from_logits=True)}
    if config.conversion_head:
        metrics |= {"conversion_auc": tf.keras.metrics.AUC(),
                    "conversion_logloss": tf.keras.metrics.BinaryCrossentropy()}
    for batch in data:
        outputs = model.training_outputs(batch)
        clicked = tf.reshape(batch[CLICK_LABEL], [-1, 1])
        metrics["auc"].update_state(clicked, outputs["click_logit"])
        metrics["logloss"].update_state(clicked, outputs["click_logit"])
        if config.conversion_head:
            converted = tf.reshape(batch[CONVERSION_LABEL], [-1, 1])
            metrics["conversion_auc"].update_state(converted, outputs["p_click_and_convert"])
            metrics["conversion_logloss"].update_state(converted, outputs["p_click_and_convert"])
    return {name: float(metric.result()) for name, metric in metrics.items()}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def launch_local(shards_dir: Path, config_json: dict[str, Any], out: Path, workers: int = 1,
                 tensorboard: Path | None = None, verbose: bool = True, timeout_s: float | None = None) -> dict[str, Any]:
    """Run the trainer as ``workers`` processes on this machine (``TF_CONFIG`` set for each when more
    than one) and return the chief's ``trained.json``. A worker that fails fails the training with its
    exit code; the others are stopped."""
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "trainer_config.json"
    config_file.write_text(json.dumps(config_json, default=str))
    argv = [sys.executable, "-m", "models.ranking.trainer", "--shards", str(shards_dir), "--config", str(config_file),
            "--out", str(out), *(["--tensorboard", str(tensorboard)] if tensorboard else []),
            *([] if verbose else ["--quiet"])]
    hosts = [f"127.0.0.1:{port}" for port in _free_ports(workers)] if workers > 1 else []
    processes = []
    for index in range(workers):
        env = dict(os.environ)
        if hosts:
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})
        else:
            env.pop("TF_CONFIG", None)
        processes.append(subprocess.Popen(argv, env=env))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:  # a worker that fails leaves the others waiting in a collective op: they are stopped at once
        while True:
            codes = [p.poll() for p in processes]  # every one polled (any() would stop at the first alive)
            if None not in codes or any(code not in (None, 0) for code in codes):
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    codes = [p.returncode for p in processes]
    config_file.unlink(missing_ok=True)
    if any(code != 0 for code in codes):
        raise RuntimeError(f"the ranker trainer failed: worker exit codes {codes} (negative: stopped by a signal, "
                           "after another worker failed or the timeout)")
    return json.loads((out / TRAINED_FILE).read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.ranking.trainer", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--shards", type=Path, required=True, help="shard directory (train/, valid/, shards.json)")
    parser.add_argument("--config", type=Path, required=True, help="RankerConfig fields as JSON")
    parser.add_argument("--out", type=Path, required=True, help="export directory (the release's ranker/)")
    parser.add_argument("--tensorboard", type=Path, default=None, help="TensorBoard log directory")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch output")
    args = parser.parse_args(argv)
    config_json = json.loads(args.config.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    result = train_from_shards(args.shards, config_json, args.out, args.tensorboard, verbose=not args.quiet)
    workers, index = cluster()
    if index == 0:
        print(f"[trainer] {result['config']['structure']}: {result['metrics']} ({workers} worker(s))", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
