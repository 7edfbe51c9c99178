"""Shared fixtures: a simulated modem bank on real ptys, and a unit configured for it.

Like python-can's test suite, a fixture checks at teardown that the test left no modem
owner thread running: a leaked owner would keep a pty open and poison later tests.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_CONFIG = ROOT / "firmware_config"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0,
               interval: float = 0.02) -> bool:
    """Wait for a condition (never a bare sleep): True as soon as it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(autouse=True)
def no_leaked_modem_threads() -> Iterator[None]:
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("modem-")]
    if leaked:
        deadline = time.monotonic() + 5
        while leaked and time.monotonic() < deadline:
            time.sleep(0.05)
            leaked = [t.name for t in threading.enumerate() if t.name.startswith("modem-")]
    assert not leaked, f"test left modem owner threads running: {leaked}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    """A real, empty ``state.db`` opened by the Store (the outbox's ReplyTable queries it)."""
    from appliance.state.store import Store

    s = Store(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def sample_registry(tmp_path: Path) -> Path:
    from appliance.registry.importer import SAMPLE_REGISTRY, import_file

    path = tmp_path / "data" / "registry.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    import_file(SAMPLE_REGISTRY, path, version=1, source="tests")
    return path


def unit_config(tmp_path: Path, sim: Any, *, modem_overrides: dict[str, Any] | None = None,
                **sections: Any) -> Any:
    """A Config for ``sim``'s modems with fast test timings."""
    from appliance.config import config_from_dict

    modem = {"min_interval_s": 0.0, "sweep_interval_s": 5.0, "health_interval_s": 5.0,
             "command_timeout_s": 2.0, "send_timeout_s": 10.0}
    modem.update(modem_overrides or {})
    data: dict[str, Any] = {
        "unit": {"name": "test", "data_dir": str(tmp_path / "data"),
                 "own_numbers": [m.number for m in sim.modems]},
        "modems": [dict(modem, name=m.name, port=m.port) for m in sim.modems],
        "replies": {"templates": str(FIRMWARE_CONFIG / "replies.toml")},
        "status": {"http_bind": ""},
        "reliability": {"retry_base_s": 1.0, "retry_max_s": 2.0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data, base_dir=tmp_path)


def write_unit_toml(tmp_path: Path, ports: Sequence[tuple[str, str]], *,
                    own_numbers: Sequence[str] = (), http_bind: str = "",
                    send_timeout_s: float = 10, sweep_interval_s: float | None = None,
                    extra: str = "") -> Path:
    """``appliance.toml`` for a unit run as its own process (``python -m appliance …``) on
    the modems ``ports`` ((name, port) pairs), with fast test timings."""
    sweep = f"sweep_interval_s = {sweep_interval_s:g}\n" if sweep_interval_s else ""
    modems = "".join(textwrap.dedent(f"""
        [[modems]]
        name = "{name}"
        port = "{port}"
        min_interval_s = 0
        command_timeout_s = 2
        send_timeout_s = {send_timeout_s:g}
        """) + sweep for name, port in ports)
    numbers = ", ".join(f'"{n}"' for n in own_numbers)
    path = tmp_path / "appliance.toml"
    path.write_text(textwrap.dedent(f"""
        [unit]
        name = "test"
        data_dir = "{tmp_path / 'data'}"
        own_numbers = [{numbers}]
        [replies]
        templates = "{FIRMWARE_CONFIG / 'replies.toml'}"
        [status]
        http_bind = "{http_bind}"
        """) + extra + modems)
    return path


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Any]:
    from appliance.simulator.bank import Simulator

    s = Simulator(tmp_path / "ports", 2, seed=1)
    s.start()
    try:
        yield s
    finally:
        s.stop()
