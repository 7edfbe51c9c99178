#!/usr/bin/env python3
"""Operator's tool: publish a signed registry version, manage keys (no unit config needed).

The same commands as ``python -m appliance registry publish|keys …``, for the publishing
machine, where the appliance is not installed as a service:

    python scripts/publish_registry.py keys init --repo REPO --keys KEYS --export-root root.json
    python scripts/publish_registry.py publish export.csv --repo REPO --keys KEYS
    python scripts/publish_registry.py keys timestamp --repo REPO --keys KEYS   # from cron
    python scripts/publish_registry.py keys rotate root --repo REPO --keys KEYS

Then upload (or serve) REPO/public; see docs/registry.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.registry.cli import add_parsers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in ("publish", "keys"):
        print(__doc__, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tuf").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="publish_registry.py")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["registry", *argv])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
