"""``python -m appliance …``: the entry points a technician and a newcomer use.

Every deliberate failure is an :class:`~appliance.errors.ApplianceError`, printed as one
plain line (``error: …``) with a non-zero exit; anything else becomes one line too, with
the traceback only under ``-v``. No traceback reaches a technician.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .config.credentials import RedactingFilter, RedactingFormatter, redact_credentials
from .errors import ApplianceError, ConfigError, ServiceUnreachable
from .version import __version__

DEFAULT_CONFIG = Path(os.environ.get("NSOR_CONFIG", "/etc/nsor/appliance.toml"))

log = logging.getLogger("appliance")


def setup_logging(verbose: int = 0, level: str = "INFO", fmt: str | None = None) -> None:
    from .journal import journal_handler

    if fmt is None:
        fmt = "journal" if os.environ.get("JOURNAL_STREAM") else "plain"
    handler: logging.Handler
    if fmt == "journal":
        handler = journal_handler()  # native with fields under systemd, else <N> prefixes
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")))
    handler.addFilter(RedactingFilter())  # no repository password in the journal
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level, logging.INFO))
    if verbose < 2:  # the scheduler's per-run chatter is noise even at -v
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    if verbose >= 2:
        from .modem.session import TRACE
        root.setLevel(TRACE)


# -- commands ------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .service.unit import Service

    config = load_config(args.config)
    config.require_modems()
    setup_logging(args.verbose, config.logging.level, config.logging.format)
    service = Service(config)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    try:
        service.run_forever(stop)
    finally:
        service.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .tools.demo import run_demo
    return run_demo(args)


def cmd_lookup(args: argparse.Namespace) -> int:
    from .tools.lookup import lookup_main
    return lookup_main(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator.cli import simulate_main
    return int(simulate_main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m appliance",
                                description="NSOR SMS appliance: CNIC queries answered by SMS.")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="debug logging (-vv: raw AT traffic too)")
    p.add_argument("--version", action="version", version=f"nsor-appliance {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"configuration file (default {DEFAULT_CONFIG}, or $NSOR_CONFIG)")

    sp = sub.add_parser("run", help="run the unit on its configured modems")
    config_arg(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("demo", help="the whole service on 4 simulated modems, sample registry")
    sp.add_argument("--messages", type=int, default=14, help="citizen messages to send (14)")
    sp.add_argument("--forever", action="store_true", help="keep sending until Ctrl-C")
    sp.add_argument("--modems", type=int, default=4, help="simulated modems (4)")
    sp.add_argument("--latency", type=float, default=0.3,
                    help="simulated AT+CMGS latency in seconds (0.3)")
    sp.add_argument("--dir", type=Path, default=None,
                    help="working directory (default: a temporary one, removed at the end)")
    sp.add_argument("--language", choices=("ur", "en"), default="ur", help="reply language")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("lookup", help="answer one CNIC from the shell, as an SMS would be")
    config_arg(sp)
    sp.add_argument("text", nargs="+", help="the CNIC (or a whole SMS text)")
    sp.add_argument("--registry", type=Path, default=None,
                    help="registry.db to use (default: the configured one)")
    sp.add_argument("--language", choices=("ur", "en"), default=None)
    sp.set_defaults(func=cmd_lookup)

    sp = sub.add_parser("simulate", help="simulated modems on ptys (see simulate --help)",
                        add_help=False)
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp.set_defaults(func=cmd_simulate)

    for register in _extensions():
        register(sub, config_arg)
    return p


def _extensions() -> list[Callable[..., None]]:
    """Command groups owned by other modules (registry, technician tools)."""
    regs: list[Callable[..., None]] = []
    try:
        from .registry.cli import add_parsers as registry_parsers
        regs.append(registry_parsers)
    except ImportError:
        pass
    from .state.audit import add_parsers as audit_parsers
    regs.append(audit_parsers)
    from .tools.db import add_parsers as db_parsers
    regs.append(db_parsers)
    try:
        from .tools.techcli import add_parsers as tech_parsers
        regs.append(tech_parsers)
    except ImportError:
        pass
    from .fleet.centre import add_parsers as fleet_parsers
    regs.append(fleet_parsers)
    return regs


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `simulate` has its own parser with its own options (--help included): hand it the
    # rest of the line untouched (argparse.REMAINDER would reject a leading --option).
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if first is not None and argv[first] == "simulate":
        args = parser.parse_args(argv[:first + 1])
        args.rest = argv[first + 1:]
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command not in ("run",):
        setup_logging(args.verbose, "WARNING" if args.command == "demo" else "INFO")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"error: {redact_credentials(line)}", file=sys.stderr)
        from .rules.wording import plural
        print(f"{plural(len(exc.problems), 'problem', 'problems')} found; nothing was "
              "started.", file=sys.stderr)
        return 2
    except ServiceUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3  # "not running", as `systemctl status` and `nsor status` say it
    except ApplianceError as exc:
        print(f"error: {redact_credentials(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line for the technician, the traceback under -v
        log.debug("internal error", exc_info=True)
        print(f"internal error: {redact_credentials(repr(exc))} (run with -v for details "
              "and report it)",
              file=sys.stderr)
        return 70
