"""``malla validate`` and ``malla analyze``: Galley's checks, offline, on files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from malla.cli.output import OutputFormat, console, emit_data, err_console, style_for
from malla.config.files import load_paths
from malla.config.model import Diagnostic

# istioctl analyze exits 79 when it found issues at or above the threshold.
ANALYZE_FOUND_ISSUES = 79

PathsArg = Annotated[
    list[str] | None, typer.Argument(help="Files or directories (recursive) of YAML; '-' reads standard input.")
]
# istioctl's spelling (`istioctl validate -f FILE`), the same as the positional paths.
FilenameOpt = Annotated[
    list[str] | None, typer.Option("--filename", "-f", help="File, directory or '-', as the positional paths (repeatable).")
]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="text, json or yaml.")]
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace for resources that name none.")]


def validate(paths: PathsArg = None, output: OutputOpt = OutputFormat.text, namespace: NamespaceOpt = "default",
             filename: FilenameOpt = None) -> None:
    """Check Istio config as Istio's validation webhook would: exit 0 when every document is valid, 1 otherwise."""
    result, files = load_paths(_given(paths, filename, command="validate"), default_namespace=namespace)
    errors = result.errors
    if output is not OutputFormat.text:
        emit_data(
            {
                "valid": not errors,
                "files": files,
                "documents": result.documents,
                "resources": [c.ref for c in result.configs],
                "keptAside": [k.ref for k in result.kube],
                "diagnostics": [d.to_json() for d in result.diagnostics],
            },
            output,
        )
    else:
        _print_diagnostics(result.diagnostics)
        summary = (
            f"{len(result.configs)} Istio resource(s) valid in {result.documents} document(s) from {files} file(s)"
            + (f"; {len(result.kube)} Kubernetes object(s) kept aside" if result.kube else "")
        )
        if errors:
            err_console.print(
                f"[red]✘ {len(errors)} error(s)[/red] in {result.invalid} resource(s); {escape(summary)}"
            )
        else:
            warnings = len(result.diagnostics)
            tail = f" ({warnings} warning(s))" if warnings else ""
            console.print(f"[green]✔[/green] {escape(summary)}{tail}")
    raise typer.Exit(1 if errors else 0)


def analyze(
    paths: PathsArg = None,
    output: OutputOpt = OutputFormat.text,
    namespace: NamespaceOpt = "default",
    failure_threshold: Annotated[
        str, typer.Option("--failure-threshold", help="Lowest level that makes the exit status non-zero: Info, Warning or Error.")
    ] = "Error",
    list_analyzers: Annotated[bool, typer.Option("--list-analyzers", "-L", help="List the analyzers and exit.")] = False,
    filename: FilenameOpt = None,
) -> None:
    """Cross-resource checks with Istio's message codes (IST0101, ...), as istioctl analyze."""
    from malla.analysis import ANALYZERS, analyze as run_analyzers

    if list_analyzers:
        rows = [{"name": a.name, "codes": list(a.codes), "description": a.description} for a in ANALYZERS]
        if output is OutputFormat.text:
            for row in rows:
                console.print(f"[bold]{row['name']}[/bold]  {', '.join(row['codes'])}  {escape(row['description'])}")
        else:
            emit_data(rows, output)
        raise typer.Exit(0)
    levels = {"info": 0, "warning": 1, "error": 2}
    threshold = levels.get(failure_threshold.lower())
    if threshold is None:
        err_console.print(f"[red]error:[/red] --failure-threshold must be Info, Warning or Error, got {failure_threshold!r}")
        raise typer.Exit(2)
    result, _files = load_paths(_given(paths, filename, command="analyze"), default_namespace=namespace)
    # Schema problems are reported the way istioctl reports them: IST0106.
    messages = [_as_schema_message(d) for d in result.diagnostics if d.level == "error"]
    # The analyzers never read the clock themselves: certificate expiry is judged against now.
    messages += run_analyzers(result.configs, result.kube, now=datetime.now(UTC))
    if output is not OutputFormat.text:
        emit_data([m.to_json() for m in messages], output)
    elif messages:
        for m in messages:
            console.print(f"[{style_for(m.level)}]{escape(m.format_istioctl())}[/]")
    else:
        console.print("[green]✔[/green] No validation issues found when analyzing the given files.")
    failing = any(levels[m.level] >= threshold for m in messages)
    raise typer.Exit(ANALYZE_FOUND_ISSUES if failing else 0)


def _given(paths: list[str] | None, filename: list[str] | None, *, command: str) -> list[str]:
    given = [*(paths or ()), *(filename or ())]
    if not given:
        err_console.print(f"[red]error:[/red] give the YAML to check: malla {command} FILE_OR_DIR... "
                          f"(or -f FILE; '-' reads standard input)")
        raise typer.Exit(2)
    return given


def _as_schema_message(d: Diagnostic) -> Diagnostic:
    text = f"{d.field}: {d.message}" if d.field else d.message
    return Diagnostic("error", f"Schema validation error: {text}", d.origin, d.resource, d.field, "IST0106")


def _print_diagnostics(diags: list[Diagnostic]) -> None:
    for d in diags:
        err_console.print(f"[{style_for(d.level)}]{escape(d.format())}[/]")
