"""The appliance's version: one source, the package metadata (``pyproject.toml``).

An installed unit (the Debian package's virtual environment) reads it from the installed
distribution's metadata. A git checkout run with ``python -m appliance`` has no installed
distribution, so the version is read from the ``pyproject.toml`` beside the package: the
same single source, read directly.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "nsor-appliance"


def _read_version() -> str:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        with pyproject.open("rb") as fh:
            project = tomllib.load(fh).get("project", {})
        if project.get("name") == DISTRIBUTION and isinstance(project.get("version"), str):
            return str(project["version"])
    except (OSError, tomllib.TOMLDecodeError):
        pass
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__: str = _read_version()
