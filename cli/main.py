"""``recsys``: the platform's command line. Every command has ``--help``.

Each package contributes its own Typer sub-app; this module only wires them together.
"""

from __future__ import annotations

import typer

import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

app = typer.Typer(
    name="recsys",
    help="Real-time recommendation platform (retail + banking): data, features, training, serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
