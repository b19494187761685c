"""Entry point of the ``malla`` command."""

from __future__ import annotations

import typer

from malla import __version__
from malla.cli import config_cmds, demo_cmd

app = typer.Typer(
    name="malla",
    help="malla: a service mesh with Istio's API, a Python control plane and real Envoy proxies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

app.command("validate")(config_cmds.validate)
app.command("analyze")(config_cmds.analyze)
app.command("demo")(demo_cmd.demo)


@app.command("version")
def version() -> None:
    """Print malla's version."""
    typer.echo(f"malla {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
