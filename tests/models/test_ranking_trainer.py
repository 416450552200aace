"""The ranker's trainer streams shards, alone or as two MultiWorkerMirroredStrategy workers on this machine
(models/ranking/shards.py, models/ranking/trainer.py): two workers learn what one learns."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from models.ranking.config import RankerConfig
from models.ranking.data import feature_arrays
from models.ranking.export import load_scorer
from models.ranking.shards import (
    TRAIN,
    VALID,
    ShardSet,
    probe_frame,
    shard_dataset,
    worker_files,
    write_frame_shards,
)
from models.ranking.synthetic import log_impressions, make_world
from models.ranking.trainer import launch_local


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[ShardSet, RankerConfig]:
    world = make_world(150, seed=3)
    train, valid = log_impressions(world, 1200, seed=4), log_impressions(world, 300, seed=5)
    config = RankerConfig(numeric=world.numeric, categorical=world.categorical, log1p=["num_3"], deep_layers=(16,),
                          epochs=3, learning_rate=0.01, batch_size=256, structure="stacked")
    made = write_frame_shards(train, valid, tmp_path_factory.mktemp("shards"), world.numeric, world.categorical,
                              position=True, rows_per_shard=2_500)
    return made, config


def test_shards_hold_every_row_once_typed_and_split_among_workers(shards) -> None:
    made, config = shards
    assert made.rows == {TRAIN: 12_000, VALID: 3_000} and len(made.files(TRAIN)) == 5
    assert sum(len(worker_files(made.files(TRAIN), 2, w)) for w in range(2)) == 5
    with pytest.raises(ValueError, match="cannot feed 3 workers"):
        worker_files(made.files(VALID), 3, 0)
    batches = list(shard_dataset(made.files(TRAIN), config, 1000))
    assert sum(len(b["clicked"]) for b in batches) == 12_000
    assert batches[0]["position"].dtype.name == "int32" and batches[0]["cat_0"].dtype.name == "string"
    assert int(sum(b["clicked"].numpy().sum() for b in batches)) == made.positives[TRAIN]


def test_two_workers_learn_what_one_learns(shards, tmp_path) -> None:
    made, config = shards
    one = launch_local(made.directory, asdict(config), tmp_path / "one", workers=1, verbose=False)
    two = launch_local(made.directory, asdict(config), tmp_path / "two", workers=2, verbose=False)
    assert (one["workers"], two["workers"]) == (1, 2)
    assert one["parity"]["agree"] and two["parity"]["agree"]  # the chief checked its two exports
    assert one["steps_per_epoch"] == 12_000 // 256 and two["steps_per_epoch"] == 4_800 // 128  # the smaller share
    assert one["metrics"]["auc"] > 0.8 and two["metrics"]["auc"] > 0.8  # a constant predictor has 0.5
    assert abs(one["metrics"]["auc"] - two["metrics"]["auc"]) < 0.02
    assert abs(one["metrics"]["logloss"] - two["metrics"]["logloss"]) < 0.02
    probe = probe_frame(made.files(VALID), 1000)
    scores = [load_scorer(tmp_path / name, "fast").score(feature_arrays(probe, config)) for name in ("one", "two")]
    assert np.corrcoef(scores[0], scores[1])[0, 1] > 0.9  # the same items ranked alike


def test_a_dead_worker_fails_the_training_at_once_instead_of_hanging_it(shards, tmp_path) -> None:
    """Worker 2 is killed mid-training: worker 1 would wait in its all-reduce forever; it is stopped."""
    import signal
    import threading
    import time
    from dataclasses import replace

    import psutil

    made, config = shards
    outcome: dict[str, str] = {}

    def train() -> None:
        try:
            launch_local(made.directory, asdict(replace(config, epochs=200)), tmp_path / "x", workers=2, verbose=False)
        except RuntimeError as err:
            outcome["error"] = str(err)

    thread = threading.Thread(target=train)
    thread.start()
    deadline = time.monotonic() + 120
    trainers: list[psutil.Process] = []
    while len(trainers) < 2 and time.monotonic() < deadline:
        trainers = [p for p in psutil.Process().children() if "models.ranking.trainer" in " ".join(p.cmdline())]
        time.sleep(0.2)
    assert len(trainers) == 2
    time.sleep(8)  # both started (TensorFlow imported, the collective set up)
    trainers[1].send_signal(signal.SIGKILL)
    thread.join(timeout=60)
    hung = thread.is_alive()
    for trainer in trainers:  # a failing run leaves no orphan behind
        if trainer.is_running():
            trainer.kill()
    thread.join(timeout=30)
    assert not hung, "launch_local hung on the surviving worker"
    assert "worker exit codes" in outcome["error"] and "-9" in outcome["error"]
