"""Truncated, emptied and dropped tables, and garbage in every metadata field (issue 12).

For each damage to a synced ``registry.db``: nothing crashes (``info()`` never raises, no
reply path raises), every query gets "service temporarily unavailable" (never "no
record", never a wrong "convict") once the unit has looked (at once for what ``info()``
sees, after the verification the service runs for the rest), the ``registry_corrupt``
alarm is raised with the repair asked for, and the next sync -- against a real HTTP
server on 127.0.0.1 -- repairs the file. The service's own jobs are used
(``IntegrityWatch`` with the registry scheduler's ``run`` as repair).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from appliance.registry.integrity import ALARM, IntegrityWatch
from appliance.registry.lookup import Registry
from appliance.registry.schedule import RegistryScheduler
from appliance.rules.responder import RegistryState, respond
from tests.test_registry_bitflip import POLICY, TEMPLATES, unit_state
from tests.test_registry_support import Env, env, people, person

__all__ = ["env"]

ACTIVE = [person(i)["cnic"] for i in range(30)]
INNOCENT = [person(i)["cnic"] for i in range(900, 930)]


def _sql(*statements: str) -> Callable[[Path], None]:
    def damage(db: Path) -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            conn.execute("PRAGMA ignore_check_constraints = 1")
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()
    return damage


def _truncate(fraction: float) -> Callable[[Path], None]:
    def damage(db: Path) -> None:
        with open(db, "r+b") as fh:
            fh.truncate(int(db.stat().st_size * fraction))
    return damage


TABLE_DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated to half": _truncate(0.5),
    "truncated to one page": _truncate(4096 / 45056),
    "emptied file": _truncate(0),
    "emptied offender": _sql("DELETE FROM offender"),
    "emptied offender_digest": _sql("DELETE FROM offender_digest"),
    "emptied registry_meta": _sql("DELETE FROM registry_meta"),
    "emptied registry_seal": _sql("DELETE FROM registry_seal"),
    "dropped offender": _sql("DROP TABLE offender"),
    "dropped offender_digest": _sql("DROP TABLE offender_digest"),
    "dropped registry_meta": _sql("DROP TABLE registry_meta"),
    "dropped registry_seal": _sql("DROP TABLE registry_seal"),
    "half the offenders deleted": _sql("DELETE FROM offender WHERE "
                                       "cast(substr(cnic, 12, 1) AS INTEGER) % 2 = 0"),
}

META_FIELDS = ("schema_version", "version", "source", "record_count", "imported_at",
               "signed_at", "expires_at", "verified_at")
#: Garbage no field can hold honestly: undecodable text, a blob, a wrong type, a date
#: that is not one, a negative count. (``source`` is free-form text with TEXT affinity:
#: SQLite stores a number there as its text, which is plausible, so only undecodable
#: text and a blob are garbage there.)
GARBAGE = {"invalid utf-8": "CAST(x'c3ff28' AS TEXT)", "blob": "x'00ff00ff'",
           "text": "'garbage'", "negative": "-7", "real": "3.25",
           "huge": "'9999999999-99-99T99:99:99'"}
META_DAMAGE = {f"registry_meta.{field} = {name}": _sql(
    f"UPDATE registry_meta SET {field} = {value} WHERE id = 1")
    for field in META_FIELDS for name, value in GARBAGE.items()
    if not (field == "source" and name not in ("invalid utf-8", "blob"))}
META_DAMAGE.update({f"registry_seal.{field} = {name}": _sql(
    f"UPDATE registry_seal SET {field} = {value} WHERE id = 1")
    for field in ("scheme", "version", "record_count", "content_digest")
    for name, value in GARBAGE.items()})


class Unit:
    """A synced unit with the service's registry jobs (scheduler not started: the jobs
    are called directly, as the scheduler would)."""

    def __init__(self, e: Env) -> None:
        self.env = e
        self.alarms: list[tuple[str, str]] = []
        self.cleared: list[str] = []
        self.scheduler = BackgroundScheduler()
        self.registry = Registry(e.db)
        self.sync = e.unit(verifier=lambda expected: self.registry.verify_recent(expected, 900))
        self.jobs = RegistryScheduler(self.sync, scheduler=self.scheduler,
                                      check_interval_minutes=0, stale_check_minutes=0)
        self.watch = IntegrityWatch(self.registry, self.scheduler,
                                    on_alarm=lambda k, m: self.alarms.append((k, m)),
                                    on_clear=self.cleared.append,
                                    repair=lambda: self.jobs.run("repair"))

    def replies(self) -> set[str]:
        state = unit_state(self.registry)
        kinds = set()
        for cnic in ACTIVE + INNOCENT:
            reply = respond(cnic, self.registry.lookup, TEMPLATES, POLICY, state)
            if reply.kind == "hit":
                assert cnic in ACTIVE, f"{cnic} is innocent"
            kinds.add(reply.kind)
        return kinds


@pytest.mark.parametrize("damage", sorted({**TABLE_DAMAGE, **META_DAMAGE}))
def test_damage_is_unavailable_alarmed_and_repaired(env: Env, damage: str) -> None:
    env.publish(people(30))
    unit = Unit(env)
    assert unit.sync.sync().action == "snapshot"
    assert unit.watch.verify().ok
    assert unit.replies() == {"hit", "no_record"}
    {**TABLE_DAMAGE, **META_DAMAGE}[damage](env.db)

    # What info() sees (damaged metadata, a missing or emptied table) answers
    # "unavailable" at once; the rest after the verification the service runs at
    # start-up, on change and every 15 minutes (and at once for damaged metadata).
    if damage.startswith("registry_meta.") or damage.split()[0] in ("emptied", "dropped"):
        if damage not in ("emptied offender_digest", "emptied registry_seal",
                          "dropped registry_seal"):
            assert unit.replies() == {"unavailable"}
    unit.watch.verify()
    assert {k for k, _ in unit.alarms} == {ALARM}, unit.alarms
    assert unit.watch.repairs_requested >= 1
    # The repair (a real sync, run by the watch) has installed the snapshot again.
    assert unit.watch.repairs_done == 1, (unit.alarms, env.alarms)
    assert unit.registry.corrupt is None and ALARM in unit.cleared
    assert unit_state(unit.registry) is RegistryState.OK
    assert unit.replies() == {"hit", "no_record"}
    unit.registry.close()


def test_damage_answers_unavailable_before_the_repair(env: Env) -> None:
    """Without a server (the repair fails), every query is "unavailable" and stays so."""
    env.publish(people(30))
    unit = Unit(env)
    unit.sync.sync()
    env.server.close()
    for name in ("emptied offender", "registry_meta.signed_at = text",
                 "dropped offender_digest", "half the offenders deleted"):
        {**TABLE_DAMAGE, **META_DAMAGE}[name](env.db)
        unit.watch.verify()
        assert unit.replies() == {"unavailable"}, name
        assert unit.watch.repairs_done == 0
    unit.registry.close()
