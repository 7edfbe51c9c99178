"""``python -m appliance demo``: the whole unit on simulated modems, shown live.

A newcomer's first command. It builds what a real unit has — a data directory, the sample
registry (clearly fictional people), the shipped reply templates — starts a simulated bank
of modems on pseudo-terminals, runs the real service against them over real AT, and has
simulated citizens send a mix of queries: hits, no record, invalid numbers, Urdu digits,
two CNICs in one SMS, a help request. Every SMS in and every reply out is printed as it
happens; a summary closes the run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..config import FIRMWARE_CONFIG
from ..rules.cnic import format_cnic, to_urdu_digits
from ..rules.wording import plural



def citizen_messages(hits: tuple[str, ...], misses: tuple[str, ...],
                     removed: tuple[str, ...], rng: random.Random) -> list[str]:
    """One round of the mix a real service sees."""
    hit, miss = rng.choice(hits), rng.choice(misses)
    return [
        format_cnic(hit),                                    # a known offender, dashed
        miss,                                                # no record, bare digits
        to_urdu_digits(format_cnic(rng.choice(hits))),       # typed on an Urdu keyboard
        f"CNIC: {format_cnic(miss)} please check",           # words around the number
        f"{hit} {miss}",                                     # two CNICs in one SMS
        "35202-123456-7",                                    # 12 digits: invalid
        "مدد",                                               # help, in Urdu
        f"شناختی کارڈ {format_cnic(rng.choice(removed or misses))}",  # a removed record
    ]


def run_demo(args: argparse.Namespace) -> int:
    from ..config import config_from_dict
    from ..registry.importer import SAMPLE_REGISTRY, demo_cnics, import_file
    from ..service.unit import Service
    from ..simulator.bank import Simulator

    console = Console(highlight=False)
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nsor-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    console.print(f"[bold]NSOR appliance demo[/] — working directory {workdir}")
    count = import_file(SAMPLE_REGISTRY, data_dir / "registry.db", version=1,
                        source="sample registry (fictional people)")
    cnics = demo_cnics()
    console.print(f"registry: {count} fictional records imported")

    sim = Simulator(workdir / "ports", args.modems, time_scale=1.0, seed=7)
    sim.start()
    for m in sim.modems:
        m.faults.cmgs_latency = args.latency
    config = config_from_dict({
        "unit": {"name": "demo", "data_dir": str(data_dir),
                 "own_numbers": [m.number for m in sim.modems]},
        "modems": [{"name": m.name, "port": m.port, "min_interval_s": 0.0,
                    "sweep_interval_s": 30.0, "command_timeout_s": 5.0,
                    "send_timeout_s": 30.0} for m in sim.modems],
        "replies": {"templates": str(FIRMWARE_CONFIG / "replies.toml"),
                    "language": args.language},
        "status": {"http_bind": ""},
    }, base_dir=workdir)

    lock = threading.Lock()

    def listener(event: str, data: dict[str, Any]) -> None:
        with lock:
            if event == "inbound":
                console.print(f"[cyan]→ {data['sender']} to {data['modem']}:[/] {data['text']}")
            elif event == "sent":
                console.print(f"[green]← {data['modem']} to {data['recipient']} "
                              f"({plural(data['parts'], 'part', 'parts')}):[/] {data['text']}")
            elif event == "ignored":
                console.print(f"[yellow]· {data['modem']} ignored {data['sender']}: "
                              f"{data['reason']}[/]")
            elif event == "failed":
                console.print(f"[red]! {data['modem']} send failed: {data['error']}[/]")

    service = Service(config, listener=listener)
    started = time.monotonic()
    service.start()
    rng = random.Random(7)
    citizens = [f"+92300{rng.randrange(10**6, 10**7)}" for _ in range(6)]
    sent: list[tuple[str, float]] = []
    try:
        ready = sim.wait_for(lambda: all(m.status().state == "ready"
                                         for m in service.modems.values()), 20)
        console.print(f"{len(service.modems)} modems ready in "
                      f"{time.monotonic() - started:.1f} s" if ready else
                      "[red]modems not ready after 20 s[/]")
        i = 0
        while args.forever or i < args.messages:
            batch = citizen_messages(cnics.hits, cnics.misses, cnics.removed, rng)
            text = batch[i % len(batch)]
            who = citizens[i % len(citizens)]
            sim.citizen_send(who, i % len(sim.modems), text)
            sent.append((who, time.monotonic()))
            i += 1
            time.sleep(0.4)
        expected: dict[str, int] = {}
        for who, _ in sent:
            expected[who] = expected.get(who, 0) + 1
        sim.wait_for(lambda: all(len(sim.inbox(w)) >= n for w, n in expected.items()), 60)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        service.stop()
        sim.stop()
    _summary(console, service, sim, sent)
    if not args.dir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _summary(console: Console, service: Any, sim: Any, sent: list[tuple[str, float]]) -> None:
    from ..state.store import Inbound, Outbound, Store

    store = Store(service.config.state_path)
    try:
        table = Table(title="Summary")
        for col in ("modem", "SMS in", "replies out", "parts out"):
            table.add_column(col, justify="right")
        for name in service.modems:
            n_in = Inbound.select().where(Inbound.modem == name).count()
            out = Outbound.select().where((Outbound.modem == name)
                                          & Outbound.status.in_(("sent", "delivered")))
            table.add_row(name, str(n_in), str(out.count()), str(sum(o.parts for o in out)))
        console.print(table)
        lat = [(o.first_submit_at - i.received_at) * 1000 for o in Outbound.select()
               for i in [Inbound.get_or_none(Inbound.id == o.inbound)]
               if i is not None and o.first_submit_at]
        answered = sum(len(sim.inbox(w)) for w in {w for w, _ in sent})
        console.print(f"citizen messages: {len(sent)}, replies received by citizens: "
                      f"{answered}")
        if lat:
            lat.sort()
            console.print(f"SMS stored → first reply part submitted: p50 "
                          f"{statistics.median(lat):.1f} ms, max {lat[-1]:.1f} ms")
    finally:
        store.close()
