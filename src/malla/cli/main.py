"""Entry point of the ``malla`` command."""

from __future__ import annotations

import typer

from malla import __version__
from malla.cli import config_cmds, controlplane_cmds, demo_cmd, gateway_cmd, pilot_cmds, run_cmd
from malla.cli.dashboard_cmd import dashboard
from malla.cli import ca_cmd, token_cmd
from malla.cli import telemetry_cmds

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
app.command("up")(controlplane_cmds.up)
app.command("down")(controlplane_cmds.down)
app.command("status")(controlplane_cmds.status)
app.command("apply")(controlplane_cmds.apply)
app.command("delete")(controlplane_cmds.delete)
app.command("get")(controlplane_cmds.get)
app.command("proxy-status")(controlplane_cmds.proxy_status)
app.command("proxy-config")(pilot_cmds.proxy_config)
app.command("translate")(pilot_cmds.translate)
app.command("run", context_settings={"allow_interspersed_args": False})(run_cmd.run)
app.command("gateway")(gateway_cmd.gateway)
app.command("prometheus-config")(telemetry_cmds.prometheus_config)
app.command("dashboard")(dashboard)
app.add_typer(token_cmd.app, name="token")
app.add_typer(ca_cmd.app, name="ca")


@app.command("version")
def version() -> None:
    """Print malla's version."""
    typer.echo(f"malla {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
