#!/usr/bin/env python3
"""Cost of the start-up reply check and of the message retention job, as figures.

    python scripts/bench_privacy.py --registry /var/tmp/reg-1m.db --messages 100000

* ``registry_lengths``: the scan for the longest names (at start and once per installed
  registry version), on the registry given (build one with scripts/gen_registry.py and
  ``python -m appliance registry import``);
* ``reply_budget.check``: every reply rendered at its longest, for max_cnics 3 and 10;
* ``retention.redact``: a backlog of N answered SMS (inbound row, reply, two parts, an
  audit row each) past the window, as after the first run of an upgraded unit, then the
  hourly run with nothing to do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.registry.names import longest_names  # noqa: E402
from appliance.rules import reply_budget  # noqa: E402
from appliance.state import retention  # noqa: E402
from appliance.state.audit import Audit  # noqa: E402
from appliance.service.guard import GuardCnic, GuardEvent  # noqa: E402
from appliance.rules.responder import Policy, load_templates  # noqa: E402
from appliance.state.store import Store, db, write_txn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DAY_S = 86_400.0


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def bench_registry(path: Path) -> None:
    lengths, took = _timed(lambda: reply_budget.lengths_of(longest_names(path)))
    print(f"FIGURES registry_lengths records_file={path.name} seconds={took:.3f} "
          f"name={lengths.name if lengths else None} parent={lengths.parent if lengths else None}")


def bench_check() -> None:
    templates = load_templates(ROOT / "firmware_config" / "replies.toml")
    for max_cnics in (3, 10):
        policy = Policy(max_cnics=max_cnics, max_parts=10)
        problems, took = _timed(lambda: reply_budget.check(templates, policy))
        print(f"FIGURES reply_budget_check max_cnics={max_cnics} seconds={took:.3f} "
              f"problems={len(problems)}")


def bench_redact(messages: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "state.db")
        db.create_tables([GuardEvent, GuardCnic], safe=True)
        audit = Audit(b"k" * 32)
        old = time.time() - 30 * DAY_S
        pdu = "07919252010000F0040C9192" + "00" * 120
        with write_txn():
            conn = db.connection()
            for i in range(messages):
                number = f"+92300{i:07d}"
                conn.execute(
                    "INSERT INTO inbound (modem, pdu_hash, pdu, sender, text, received_at, "
                    "status, processed_at) VALUES ('sim1', ?, ?, ?, ?, ?, 'answered', ?)",
                    (f"{i:032x}", pdu, number, "35202-1234567-1", old, old))
                cur = conn.execute(
                    "INSERT INTO outbound (inbound, recipient, text, kind, status, attempts, "
                    "resends, link_failures, parts, next_attempt_at, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'hit', 'delivered', 1, 0, 0, 2, 0, ?, ?)",
                    (i + 1, number, "خبردار! " * 20, old, old))
                for seq in (1, 2):
                    conn.execute(
                        "INSERT INTO part (outbound_id, attempt, seq, total, modem, mr, status, "
                        "pdu, submitted_at) VALUES (?, 1, ?, 2, 'sim1', ?, 'delivered', ?, ?)",
                        (cur.lastrowid, seq, seq, pdu, old))
            audit.append(modem="sim1", sender="+923000000000",
                         entries=[("3520212345671", "hit")] * messages, at=old)
        hashers = retention.Hashers(number=audit.sender_hash, digest=audit.digest_hash)
        changed, took = _timed(lambda: retention.redact(now=time.time(), retention_days=7,
                                                        hashers=hashers))
        print(f"FIGURES retention_backlog messages={messages} seconds={took:.2f} "
              f"rows={sum(changed.values())} per_message_ms={1000 * took / messages:.3f}")
        _, idle = _timed(lambda: retention.redact(now=time.time(), retention_days=7,
                                                  hashers=hashers))
        print(f"FIGURES retention_idle messages={messages} seconds={idle:.3f}")
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", type=Path, default=None)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    if args.registry is not None:
        bench_registry(args.registry)
    bench_check()
    bench_redact(args.messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
