"""Translation is pure: no module of malla.pilot imports I/O, gRPC, asyncio, the clock or the environment."""

import ast
from pathlib import Path

import malla.pilot

FORBIDDEN = {
    "grpc",
    "asyncio",
    "os",
    "socket",
    "subprocess",
    "time",
    "datetime",
    "random",
    "threading",
    "watchfiles",
    "kubernetes",
    "pathlib",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_pilot_imports_nothing_impure():
    package = Path(malla.pilot.__file__).parent
    offenders = {
        f"{path.name}: {sorted(imported_modules(path) & FORBIDDEN)}"
        for path in sorted(package.glob("*.py"))
        if imported_modules(path) & FORBIDDEN
    }
    assert not offenders
