"""Print debian/copyright (machine-readable format 1.0) for the package: the application,
then every Python distribution in the virtual environment with the licence its own
metadata declares (so the file cannot drift from what is shipped).

Usage: VENV/bin/python packaging/deb/copyright.py VENV
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path


def licence(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return str(expression)
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                   if c.startswith("License :: ") and c.count(" :: ") >= 2]
    if classifiers:
        return " or ".join(classifiers)
    text = (meta.get("License") or "").strip().splitlines()
    return text[0][:80] if text else "see the distribution's metadata"


def main(venv: Path) -> None:
    site = next((venv / "lib").glob("python3*/site-packages"))
    print("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    print("Upstream-Name: nsor-appliance")
    print()
    print("Files: *")
    print("Copyright: 2026 the NSOR appliance authors")
    print("License: other")
    print(" The NSOR SMS appliance: its licence is the project's (see the source repository).")
    for dist in sorted(metadata.distributions(path=[str(site)]),
                       key=lambda d: str(d.metadata["Name"]).lower()):
        name, version = dist.metadata["Name"], dist.version
        print()
        print(f"Files: usr/lib/nsor-appliance/venv/lib/*/site-packages/{name}*")
        print(f"Comment: {name} {version}, installed from its wheel")
        print(f"Copyright: the {name} authors (see its metadata)")
        print(f"License: {licence(dist)}")
        print(f" The full text is in the distribution's dist-info directory, beside its code.")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
