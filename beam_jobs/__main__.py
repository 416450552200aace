"""``python -m beam_jobs``: the ``stream`` commands on their own (``recsys stream`` once wired into the CLI)."""

from beam_jobs.cli import app

app(prog_name="python -m beam_jobs")
