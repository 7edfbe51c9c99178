"""``nsor balance [MODEM]`` and ``nsor ussd MODEM CODE``: USSD through the running service.

The service owns the modem ports, so these commands never open one: they ask the service
over its control socket (:mod:`appliance.service.control`), and print what the operator answered
and the amount that the modem's ``balance_pattern`` extracts from it. That is the way to
test a pattern against a real operator's answer without stopping the unit.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

#: Exit status when an answer did not come, or the pattern found no amount in it.
FAILED = 1


def add_parsers(sub: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    sp = sub.add_parser("balance", help="ask each modem's SIM balance now (through the "
                        "running service); prints the operator's answer and the amount")
    config_arg(sp)
    sp.add_argument("modem", nargs="?", default=None,
                    help="only this modem (its name in the configuration)")
    sp.add_argument("--json", action="store_true", help="print the answers as JSON")
    sp.set_defaults(func=cmd_balance)

    sp = sub.add_parser("ussd", help="send a USSD code from one modem (through the running "
                        "service) and print the operator's answer")
    config_arg(sp)
    sp.add_argument("modem", help="the modem (its name in the configuration)")
    sp.add_argument("code", help='the USSD code, e.g. "*123#" (quote it: # starts a comment '
                    "in some shells)")
    sp.add_argument("--json", action="store_true", help="print the answer as JSON")
    sp.set_defaults(func=cmd_ussd)


def _ask(args: argparse.Namespace, message: dict[str, Any]) -> list[dict[str, Any]]:
    from ..config import load_config
    from ..service.control import request, socket_path
    from ..service.requests import ANSWER_WAIT_S

    config = load_config(args.config)
    names = [m.name for m in config.enabled_modems]
    if message.get("modem") and message["modem"] not in names:
        raise ConfigError(f"{message['modem']}: no enabled modem of that name in "
                          f"{args.config}; choose one of: {', '.join(names) or '(none)'}")
    answer = request(socket_path(config.unit.data_dir), message, timeout=ANSWER_WAIT_S + 10)
    results: list[dict[str, Any]] = answer.get("modems") or []
    return results


def cmd_balance(args: argparse.Namespace) -> int:
    results = _ask(args, {"op": "balance", "modem": args.modem})
    return _print(results, args.json, balance=True)


def cmd_ussd(args: argparse.Namespace) -> int:
    results = _ask(args, {"op": "ussd", "modem": args.modem, "code": args.code})
    return _print(results, args.json, balance=False)


def _print(results: list[dict[str, Any]], as_json: bool, *, balance: bool) -> int:
    failed = [r for r in results if r.get("error")
              or (balance and r.get("pattern") and r.get("amount") is None)]
    if as_json:
        print(json.dumps(results, indent=1, ensure_ascii=False))
        return FAILED if failed else 0
    if not results:
        print("no modem is enabled in the running service")
        return FAILED
    for r in results:
        head = f"{r['modem']}  {r.get('code') or '-'}"
        if r.get("error"):
            print(f"{head}  FAILED: {r['error']}")
            continue
        print(f"{head}  answered at {time.strftime('%H:%M:%S %Z', time.localtime(r['at']))}")
        print(f"  answer: {r.get('answer')!r}")
        pattern = r.get("pattern")
        if not pattern:
            print("  amount: - (no balance_pattern for this modem)")
        elif r.get("amount") is None:
            print(f"  amount: NOT FOUND: balance_pattern '{pattern}' does not match this "
                  "answer; its first group must capture the number")
        else:
            print(f"  amount: {r['amount']:.2f} (balance_pattern '{pattern}')")
        if r.get("status") == 1:
            print("  (the network asked for more input; the session was closed)")
    return FAILED if failed else 0
