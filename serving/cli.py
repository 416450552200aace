"""``recsys serving``: run the online service."""

from __future__ import annotations

import logging

import typer

app = typer.Typer(name="serving", help="The online recommendation service (FastAPI + uvicorn).", no_args_is_help=True)


@app.callback()
def main() -> None:
    """The online recommendation service (FastAPI + uvicorn)."""


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to bind"),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port"),
    domains: list[str] = typer.Option(
        None, "--domains", "-d", help="domain to serve (repeatable; default: every writable domain)"
    ),
    log_level: str = typer.Option("info", help="uvicorn/application log level"),
) -> None:
    """Serve recommendations and event intake. The API key for /v1/events comes from RECSYS_API_KEY;
    releases are read from RECSYS_ARTIFACTS_DIR and features from the Feast store of RECSYS_DATA_DIR."""
    import uvicorn

    from serving.app import create_app
    from serving.settings import load_settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(domains=domains or None)
    typer.echo(f"serving {', '.join(settings.domains)} on http://{host}:{port} (loading releases...)")
    if settings.api_key is None:
        typer.echo("warning: RECSYS_API_KEY is not set; POST /v1/events will answer 503", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)
