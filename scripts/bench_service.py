#!/usr/bin/env python3
"""CPU per SMS of the service's own work, without modems: the per-SMS calls the engine
makes on its two ports (InboxPort, OutboxPort), in the order it makes them, against a real
``state.db`` and registry.

    python scripts/bench_service.py [--messages 2000] [--modems 8] [--profile out.prof]

Prints CPU microseconds per SMS for each step (record + answer the inbound, claim the reply,
record the stored part, record it sent, close the reply, apply its delivery report) and in
total. The AT traffic, the pty and the simulator are not in these figures (scripts/bench.py
measures the whole unit); this isolates what SQLite, the guard and the audit log cost, in
seconds rather than the half hour of the full benchmark. CPU is ``time.process_time``: the
kernel's share of each fsync is in it, the wait for the disk is not (see "wall").
"""

from __future__ import annotations

import argparse
import cProfile
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.config import config_from_dict  # noqa: E402
from appliance.modem import pdu as pdumod  # noqa: E402
from appliance.modem.engine import ModemState, ModemStatus  # noqa: E402
from appliance.registry.importer import SAMPLE_REGISTRY, import_file  # noqa: E402
from appliance.service.unit import Service  # noqa: E402
from appliance.simulator import pdu as sim_pdu  # noqa: E402
from appliance.modem.ports import SubmittedPart  # noqa: E402

STEPS = ("inbound", "claim", "stored", "sent", "done", "report")


def build(work: Path, modems: int) -> Service:
    data = work / "data"
    data.mkdir(parents=True)
    import_file(SAMPLE_REGISTRY, data / "registry.db", version=1, source="bench")
    cfg = config_from_dict({
        "unit": {"name": "bench", "data_dir": str(data)},
        "modems": [{"name": f"m{i}", "port": f"/dev/null-{i}", "min_interval_s": 0.0,
                    "hourly_cap": 100_000, "daily_cap": 1_000_000} for i in range(modems)],
        "replies": {"templates": str(ROOT / "firmware_config" / "replies.toml")},
        "status": {"http_bind": ""},
        "registry": {"max_age_hours": 2160},
    }, base_dir=work)
    svc = Service(cfg)
    for name in svc.modems:
        svc.outbox.bank.on_status(ModemStatus(name=name, port='', state=ModemState.READY))
    return svc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--modems", type=int, default=8)
    ap.add_argument("--profile", type=Path, help="write a cProfile of the loop here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="nsor-bench-service-") as tmp:
        svc = build(Path(tmp), args.modems)
        with sqlite3.connect(svc.config.registry_path) as conn:
            hits = [r[0] for r in conn.execute("SELECT cnic FROM offender LIMIT 50")]
        names = list(svc.modems)
        stamp = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
        inbound = []
        for i in range(args.messages):
            sender = f"+92300{1000000 + i:07d}"
            text = hits[i % len(hits)] if i % 2 else f"{3520200000000 + i:013d}"
            pdu_hex = sim_pdu.encode_deliver(sender, text, smsc="+923000000099",
                                             timestamp=stamp)[0].pdu
            inbound.append((names[i % len(names)], pdu_hex, pdumod.decode(pdu_hex)))
        spent = dict.fromkeys(STEPS, 0.0)
        prof = cProfile.Profile() if args.profile else None
        clock = time.process_time
        if prof:
            prof.enable()
        wall = time.perf_counter()
        for n, (modem, pdu_hex, decoded) in enumerate(inbound):
            t0 = clock()
            svc.on_inbound(modem, pdu_hex, decoded)
            t1 = clock()
            job = svc.outbox.next_job(modem)
            t2 = clock()
            assert job is not None, "the reply was not queued"
            part = SubmittedPart(seq=1, total=1, concat_ref=None, mr=None, submitted_at=time.time(),
                                 storage_index=n % 30, pdu="00")
            svc.outbox.part_stored(job, part)
            t3 = clock()
            svc.outbox.part_sent(job, SubmittedPart(seq=1, total=1, concat_ref=None, mr=n % 256,
                                             submitted_at=part.submitted_at))
            t4 = clock()
            svc.outbox.job_done(job, None, [part])
            t5 = clock()
            svc.outbox.on_status_report(modem, pdumod.StatusReport(
                reference=n % 256, recipient=job.recipient, status=0, delivered=True,
                final=True, timestamp=None, discharge=None, pdu=""))
            t6 = clock()
            for step, a, b in zip(STEPS, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)):
                spent[step] += b - a
        wall = time.perf_counter() - wall
        if prof:
            prof.disable()
            prof.dump_stats(str(args.profile))
        counts = svc.store.counts()
        svc.store.close()

    n = args.messages
    total = sum(spent.values())
    print(f"# service CPU per SMS ({n} SMS, {args.modems} modems, single-part replies, "
          f"delivery reports on)")
    print("| step | µs/SMS |\n|---|---|")
    for step in STEPS:
        print(f"| {step} | {spent[step] / n * 1e6:.0f} |")
    print(f"| **total** | **{total / n * 1e6:.0f}** |")
    print(f"\nwall {wall / n * 1e6:.0f} µs/SMS (fsync included); outbound {counts['outbound']}")
    print(f"command: python scripts/bench_service.py --messages {n} --modems {args.modems}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
