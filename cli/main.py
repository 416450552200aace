"""``recsys``: the platform's command line. Every command has ``--help``.

Each package contributes its own Typer sub-app; this module only wires them together.
Heavy libraries (TensorFlow, PySpark, Beam) are imported inside the commands, so ``--help`` is fast.
"""

from __future__ import annotations

import typer

import common  # noqa: F401  (prometheus_client before feast: see common/__init__.py)
from beam_jobs.cli import app as stream_app
from cli.domain import app as domain_app
from cli.run import run
from cli.summary import summary
from experiments.cli import app as experiments_app
from feature_repo.cli import app as features_app
from ingest.cli import app as data_app
from loop.cli import app as loop_app
from models.cli import app as models_app
from models.evaluation.cli import app as evaluation_app
from models.ranking.cli import app as ranker_app
from models.retrieval.cli import app as retrieval_app
from orchestration.cli import app as airflow_app
from serving.cli import app as serving_app
from simulation.cli import app as sim_app
from spark_jobs.cli import app as batch_app

app = typer.Typer(
    name="recsys",
    help="Real-time recommendation platform (retail + banking): data, features, training, serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def check_environment() -> None:
    """Every RECSYS_* variable is checked before any command runs: a bad value fails here, naming it."""
    from pydantic import ValidationError

    from common.settings import PREFIX, env

    try:
        env()
    except ValidationError as err:
        problems = "; ".join(f"{PREFIX}{str(e['loc'][0]).upper()}={e.get('input')!r}: {e['msg']}" for e in err.errors())
        raise typer.BadParameter(problems, param_hint="environment") from None


app.command()(run)
app.command()(summary)
app.add_typer(domain_app, name="domain", help="Declare your own business (a domain) and list the declared ones.")
app.add_typer(data_app, name="data", help="MovieLens, import of your own data, artifact releases.")
app.add_typer(evaluation_app, name="eval", help="Offline evaluation: metrics, temporal split, baselines, reports.")
app.add_typer(sim_app, name="sim", help="The synthetic world: generate retail and banking data with a known truth.")
app.add_typer(features_app, name="features", help="Feast feature store: apply, materialize, online reads.")
app.add_typer(ranker_app, name="ranker", help="The DCN-v2 ranker: train, export, check export parity.")
app.add_typer(retrieval_app, name="retrieval", help="Retrieval: two-tower, content tower, popularity, ScaNN indexes.")
app.add_typer(experiments_app, name="experiments", help="A/B metrics, SRM, off-policy evaluation, dashboard.")
app.add_typer(batch_app, name="batch", help="Spark batch jobs: compaction, features, training sets.")
app.add_typer(models_app, name="models", help="Training launchers, release builder, end-to-end offline evaluation.")
app.add_typer(serving_app, name="serving", help="The real-time recommendation API (FastAPI + uvicorn).")
app.add_typer(stream_app, name="stream", help="The Beam streaming job: live events -> online features, lake, dead letters.")
app.add_typer(airflow_app, name="airflow", help="Run the Airflow DAGs locally (nightly retraining, materialization).")
app.add_typer(loop_app, name="loop", help="Closed-loop A/B simulation against the running service.")
