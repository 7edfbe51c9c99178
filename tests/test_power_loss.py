"""Power loss (issue 5, point 8): a process killed mid-transaction leaves ``state.db`` whole.

A child process runs the unit's real units of work on a real file through
:class:`appliance.state.store.Store` — record an inbound SMS, queue its reply (one transaction
that also marks the SMS answered), claim it, record its part, mark it sent — and reports
each one on a pipe only after the commit returned. The test SIGKILLs it at random moments,
round after round on the same file, and after every kill checks that:

* SQLite's own check passes (``PRAGMA integrity_check``, ``foreign_key_check``);
* every commit the child acknowledged is there (a committed inbound row is what allowed
  ``AT+CMGD`` to delete the SMS from the SIM; losing it loses a citizen's message);
* no transaction is half there (an answered SMS always has its reply row, and back);
* the unit's Store opens the file again and its crash recovery runs.

SIGKILL stops the process, not the kernel: the page cache survives, so this proves SQLite's
atomic commit and WAL recovery as the unit uses them, not the disk's honesty about fsync.
That half rests on ``synchronous=FULL``, argued in :mod:`appliance.state.store`.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, wait_until
from tests.fault_support import show_figures
from appliance.outbox.table import ReplyTable

replies = ReplyTable()  # stateless: the outbox's queries of the state.db a Store opened

pytestmark = pytest.mark.fault

ROUNDS = 8


def child(path: str, round_no: int) -> None:
    """The unit's write path in a loop, acknowledging each commit on stdout (run in a child)."""
    from appliance.outbox.states import State
    from appliance.modem.ports import SubmittedPart
    from appliance.state.store import Store

    store = Store(path)
    i = 0
    while True:
        i += 1
        sender = f"+92333{round_no:02d}{i:05d}"
        iid, _ = store.record_inbound(modem="sim0", pdu_hash=f"r{round_no}-{i}", pdu="00" * 40,
                                      sender=sender, text="35202-0000000-2", status="new")
        print(f"I {iid}", flush=True)
        oid = replies.queue_reply(recipient=sender, text="ن" * 60, parts=1,
                                preferred_modem="sim0", inbound_ids=[iid], kind="no_record")
        print(f"O {oid} {iid}", flush=True)
        job = replies.claim_next("sim0")
        if job is None:
            continue
        replies.record_parts(job, [SubmittedPart(1, 1, None, i % 256, time.time())])
        replies.move(job.outbound_id, State.SENT, sent_at=time.time())
        print(f"S {job.outbound_id}", flush=True)


class Acks(threading.Thread):
    """Reads the child's acknowledgements as they come (a full pipe would stall the child)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[str] = []

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.split("\n")[0])


def check_file(path: Path, acks: list[str]) -> dict[str, int]:
    """Every check above on one file, with plain sqlite3; returns row counts."""
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        inbound = {r[0]: (r[1], r[2]) for r in con.execute("SELECT id, status, reply FROM inbound")}
        outbound = {r[0]: (r[1], r[2]) for r in con.execute(
            "SELECT id, inbound, status FROM outbound")}
        parts = {r[0] for r in con.execute("SELECT outbound_id FROM part")}
    finally:
        con.close()
    for ack in acks:
        kind, *ids = (int(x) if x.isdigit() else x for x in ack.split())
        if kind == "I":
            assert ids[0] in inbound, f"acknowledged inbound {ids[0]} is gone"
        elif kind == "O":
            assert outbound.get(ids[0], (None,))[0] == ids[1], f"acknowledged reply {ids[0]} gone"
        elif kind == "S":
            assert outbound[ids[0]][1] == "sent" and ids[0] in parts, f"sent reply {ids[0]} lost"
    for oid, (iid, _) in outbound.items():   # queue_reply is one transaction: all or nothing
        assert inbound[iid] == ("answered", oid), f"reply {oid} without its answered inbound"
    for iid, (status, reply) in inbound.items():
        assert status == "new" or reply in outbound, f"inbound {iid} {status} without its reply"
    return {"inbound": len(inbound), "outbound": len(outbound)}


def kill_a_child(path: Path, round_no: int, rng: random.Random) -> list[str]:
    """One round: start the child, let it commit a little, SIGKILL it wherever it is.
    Returns the commits it acknowledged."""
    code = ("import sys; from tests.test_power_loss import child; "
            "child(sys.argv[1], int(sys.argv[2]))")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path), str(round_no)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    acks = Acks(proc)
    acks.start()
    try:
        assert wait_until(lambda: len(acks.lines) >= 3 or proc.poll() is not None, 30)
        assert proc.poll() is None, proc.communicate()[1]
        deadline = time.monotonic() + rng.uniform(0.05, 0.6)   # the random moment
        wait_until(lambda: proc.poll() is not None or time.monotonic() >= deadline, 5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    acks.join(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    return acks.lines


def test_sigkill_mid_transaction_never_loses_a_commit(tmp_path: Path,
                                                     request: pytest.FixtureRequest,
                                                     record_property: Any) -> None:
    from appliance.state.store import Store

    rng = random.Random(8)
    path = tmp_path / "state.db"
    acknowledged: list[str] = []
    counts: dict[str, int] = {}
    for round_no in range(ROUNDS):
        acknowledged += kill_a_child(path, round_no, rng)
        counts = check_file(path, acknowledged)
        store = Store(path)   # the unit's own open (schema, pragmas) and crash recovery
        try:
            replies.recover_after_crash()
        finally:
            store.close()
        check_file(path, acknowledged)
    show_figures(request, record_property, "power_loss", {
        "kills": ROUNDS, "acknowledged_commits": len(acknowledged),
        "inbound_rows": counts["inbound"], "outbound_rows": counts["outbound"],
        "integrity_checks_passed": 2 * ROUNDS})
    assert len(acknowledged) > ROUNDS * 3
