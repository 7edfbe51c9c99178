"""appliance.config: the shipped file loads, and every kind of mistake is reported, all at once.

The bad samples live in tests/data/config/, one mistake each (plus one with five), so a
reader can open the exact TOML a message was produced from.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import (
    Config,
    ConfigError,
    ModemConfig,
    config_from_dict,
    config_from_text,
    load_config,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "firmware_config" / "appliance.toml"
BAD = Path(__file__).resolve().parent / "data" / "config"


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


# --- the shipped file ----------------------------------------------------------------------


def test_shipped_file_loads_with_four_modems_on_stable_names() -> None:
    config = load_config(SHIPPED)
    assert [m.port for m in config.modems] == [f"/dev/nsor/modem{i}" for i in range(4)]
    assert [m.name for m in config.modems] == ["sim0", "sim1", "sim2", "sim3"]
    config.require_modems()
    assert config.source == SHIPPED
    assert config.registry.trusted_root == SHIPPED.parent / "registry_root.json"
    assert config.replies.templates == SHIPPED.parent / "replies.toml"
    assert config.registry_path == Path("/var/lib/nsor/registry.db")
    assert config.state_path == Path("/var/lib/nsor/state.db")
    assert config.secret_path == Path("/var/lib/nsor/secret.key")


def _schema_sections() -> dict[str, type]:
    sections: dict[str, type] = {}
    for f in dataclasses.fields(Config):
        if f.name == "modems":
            sections[f.name] = ModemConfig
        elif f.name != "source":
            sections[f.name] = f.default_factory  # type: ignore[assignment]
    return sections


def _file_sections(text: str) -> dict[str, str]:
    """Section name -> its text (all [[modems]] tables together)."""
    parts: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[\[?([a-z_]+)\]\]?", line.strip())
        if header:
            current = header.group(1)
        parts[current] = parts.get(current, "") + line + "\n"
    return parts


def _undocumented(text: str) -> list[str]:
    """Keys not set (or shown commented out) right under a comment that gives their default."""
    sections = _file_sections(text)
    missing = []
    for section, cls in _schema_sections().items():
        body = sections.get(section, "")
        for f in dataclasses.fields(cls):
            block = re.search(rf"((?:^#.*\n)+)(?:^(?:# )?[a-z_0-9]+ = .*\n)*^(# )?{f.name} = ",
                              body, re.M)
            if not block or not re.search(r"Default|Required", block.group(1)):
                missing.append(f"{section}.{f.name}")
    return missing


def test_shipped_file_documents_every_key_with_its_default() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert _undocumented(text) == []
    stripped = re.sub(r"(?m)^# Pause between two sends.*\n(^#.*\n)*", "", text)
    assert _undocumented(stripped) == ["modems.min_interval_s"]


def test_commented_examples_in_the_shipped_file_are_valid() -> None:
    """Uncommenting an example (PIN, SMSC, Jazz-like balance USSD, ...) must still load."""
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    sections = _schema_sections()
    section, applied = "", []
    for line in SHIPPED.read_text(encoding="utf-8").splitlines():
        header = re.fullmatch(r"\[\[?([a-z_]+)\]\]?", line.strip())
        if header:
            section = header.group(1)
        example = re.fullmatch(r"# ([a-z_0-9]+) = .+", line)
        cls = sections.get(section)
        if example and cls and example.group(1) in {f.name for f in dataclasses.fields(cls)}:
            value = tomllib.loads(line[2:])
            target = data["modems"][0] if section == "modems" else data[section]
            target.update(value)
            applied.append(example.group(1))
    assert {"balance_ussd", "balance_pattern", "pin", "smsc"} <= set(applied)
    config = config_from_dict(data, source=SHIPPED)
    assert config.modems[0].balance_ussd == "*111#"
    amount = re.search(config.modems[0].balance_pattern, "Your balance is Rs. 123.45 valid till")
    assert amount is not None and amount.group(1) == "123.45"


# --- one mistake per file ------------------------------------------------------------------


def test_baud_rate_typo_reads_exactly_as_documented() -> None:
    assert problems_of(BAD / "bad_choice.toml") == [
        f"{BAD / 'bad_choice.toml'}: line 9: modem \"sim2\".baudrate: 11520 is not a standard baud rate "
        "(choose one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)"]


@pytest.mark.parametrize(("sample", "expected"), [
    ("unknown_key", ['line 5: modem "sim1".baudrat: unknown key; did you mean \'baudrate\'?']),
    ("wrong_type", ['line 3: unit.country_code: expected a string, got 92 (a whole number); '
                    'put it in quotes: "92"']),
    ("out_of_range", ['line 5: modem "sim1".min_interval_s: 5000 is out of range; '
                      "choose a value from 0 to 3600 seconds"]),
    ("missing_required", ['line 2: modem "sim1".port: missing required key; '
                          'add e.g. port = "/dev/nsor/modem0"']),
    ("duplicate_name", ['line 7: modem "sim1".name: "sim1" repeats the name of modem "sim1" '
                        '(line 3); each entry needs its own name',
                        'line 12: modem "sim3".port: "spy:///dev/nsor/modem0?file=/tmp/modem0'
                        '.log" repeats the port of modem "sim1" (line 4); each entry needs its '
                        'own port']),
    ("bad_regex", ['line 6: modem "sim1".balance_pattern: \'Rs\\.?\\s*([0-9]+\': not a valid '
                   "regular expression (missing ), unterminated subpattern at position 8); "
                   "fix it and try it on a real USSD answer"]),
    ("bad_timezone", ['line 3: registry.timezone: "asia/karachi": unknown time zone; '
                      "did you mean 'Asia/Karachi'?"]),
    ("bad_host_port", ['line 3: status.http_bind: "127.0.0.1": no port; write host:port, e.g. '
                       '"127.0.0.1:8080" or "[::1]:8080", or "" to turn it off']),
])
def test_each_mistake_names_file_key_value_and_fix(sample: str, expected: list[str]) -> None:
    path = BAD / f"{sample}.toml"
    assert problems_of(path) == [f"{path}: {line}" for line in expected]


def test_toml_syntax_error_gives_line_and_column() -> None:
    (problem,) = problems_of(BAD / "syntax_error.toml")
    assert problem.startswith(f"{BAD / 'syntax_error.toml'}: line 5, column 10: TOML syntax error")
    assert "(at line" not in problem


def test_five_mistakes_are_all_reported_in_one_error() -> None:
    problems = problems_of(BAD / "five_mistakes.toml")
    keys = sorted(p.split(": ")[2] for p in problems)
    assert keys == ['modem "sim1".flow_control', 'modem "sim1".hourly_cap',
                    'modem "sim1".name', "registry.max_age_hours", "unit.contry_code"]
    assert [p.split(": ")[1] for p in problems] == \
        ["line 4", "line 9", "line 14", "line 12", "line 17"]
    assert all(p.startswith(f"{BAD / 'five_mistakes.toml'}: ") for p in problems)
    assert any("did you mean 'country_code'" in p for p in problems)
    assert any('did you mean "rtscts"' in p for p in problems)


# --- more wording, on inline text -----------------------------------------------------------


def text_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_text(text, source_name="t.toml", base_dir=Path("/etc/nsor"))
    return caught.value.problems


MODEM = '[[modems]]\nname = "sim1"\nport = "/dev/nsor/modem0"\n'


@pytest.mark.parametrize(("text", "expected"), [
    ("[modems]\nname = 'a'\nport = '/dev/x'\n",
     "t.toml: line 1: modems: expected an array, got {...} (a table); write [[modems]] (double "
     "brackets) for each entry"),
    ("[unit]\nbaudrate = 9600\n",
     "t.toml: line 2: unit.baudrate: unknown key here; 'baudrate' belongs in [[modems]]"),
    ("[modem]\n", "t.toml: line 1: modem: unknown key; did you mean 'modems'?"),
    (MODEM + "cmms = 'yes'\n",
     "t.toml: line 4: modem \"sim1\".cmms: expected true or false, got \"yes\" (a string); "
     "write true or false, without quotes"),
    (MODEM + "hourly_cap = 300.0\n",
     "t.toml: line 4: modem \"sim1\".hourly_cap: expected a whole number, got 300.0 (a number); "
     "write it without a decimal point: 300"),
    (MODEM + "daily_cap = true\n",
     "t.toml: line 4: modem \"sim1\".daily_cap: expected a whole number, got true (true/false)"),
    (MODEM + "send_timeout_s = nan\n",
     "t.toml: line 4: modem \"sim1\".send_timeout_s: nan is out of range; choose a value "
     "from 5 to 300 seconds"),
    ('[[modems]]\nname = "a"\nport = "spi:///dev/x"\n',
     't.toml: line 3: modem "a".port: "spi:///dev/x": spi:// is not a pySerial URL scheme; '
     'did you '
     "mean 'spy://'? choose one of alt://, cp2110://, hwgrep://, loop://, rfc2217://, "
     "socket://, spy:// or a device path"),
    ("[registry]\nsync_time = 02:30:00\n",
     't.toml: line 2: registry.sync_time: expected a string, got 02:30:00 (a time); '
     'put it in quotes: "02:30:00"'),
    ("[registry]\nsync_time = '24:00'\n",
     't.toml: line 2: registry.sync_time: "24:00": expected a 24-hour time "HH:MM", e.g. "02:30"'),
    ("[registry]\nretry_initial_s = 120\nretry_max_s = 60\n",
     "t.toml: line 3: registry.retry_max_s: 60 is below retry_initial_s (120); "
     "raise it or lower retry_initial_s"),
    ("[alarms]\nsms_numbers = '+923001234567'\n",
     't.toml: line 2: alarms.sms_numbers: expected an array, got "+923001234567" (a string); '
     'write it as an array: ["+923001234567"]'),
    ("[alarms]\nsms_numbers = ['+923001234567', 'ops']\n",
     't.toml: line 2: alarms.sms_numbers[1]: "ops" is not valid; expected a phone number: digits '
     'with an optional "+", e.g. "+923001234567"'),
    ("[logging]\nlevel = 'info'\n",
     't.toml: line 2: logging.level: "info" is not a log level (choose one of "DEBUG", "INFO", '
     '"WARNING", "ERROR"); did you mean "INFO"?'),
    (MODEM + "balance_threshold = 50.0\n",
     "t.toml: line 4: modem \"sim1\".balance_threshold: a balance alarm needs balance_ussd and "
     "balance_pattern; set both or set balance_threshold = 0"),
    (MODEM + "balance_ussd = '*111#'\nbalance_pattern = 'Rs [0-9]+'\n",
     't.toml: line 5: modem "sim1".balance_pattern: "Rs [0-9]+": has no '
     "(group) around the amount; "
     "e.g. 'Rs\\.?\\s*([0-9]+(?:\\.[0-9]+)?)'"),
])
def test_wording(text: str, expected: str) -> None:
    assert text_problems(text) == [expected]


@pytest.mark.parametrize("bind", ["127.0.0.1:8080", "0.0.0.0:80", "[::1]:9100", "nsor.local:80",
                                  ""])
def test_good_binds_load(bind: str) -> None:
    config = config_from_text(f"[status]\nhttp_bind = '{bind}'\n", base_dir=Path("/x"))
    assert config.status.http_bind == bind


@pytest.mark.parametrize("bind", ["127.0.0.1", "::1:8080", "300.1.1.1:80", "host:0",
                                  "host:http", "[::g]:80", "-bad-:80"])
def test_bad_binds_are_reported(bind: str) -> None:
    (problem,) = text_problems(f"[status]\nhttp_bind = '{bind}'\n")
    assert problem.startswith("t.toml: line 2: status.http_bind: ")


# --- files and paths -----------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "appliance.toml").write_text(
        "[unit]\ndata_dir = 'data'\n[registry]\npath = 'reg/registry.db'\n"
        "[audit]\nsecret_file = 'keys/secret.key'\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config("../etc/appliance.toml")
    etc_abs = elsewhere / ".." / "etc"
    assert config.unit.data_dir == etc_abs / "data"
    assert config.replies.templates == etc_abs / "replies.toml"
    assert config.registry.trusted_root == etc_abs / "registry_root.json"
    assert config.registry_path == etc_abs / "data" / "reg" / "registry.db"
    secret = etc_abs / "data" / "keys" / "secret.key"
    assert config.audit.secret_file == config.secret_path == secret


def test_problems_name_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.toml").write_text("[unit]\nnmae = 'x'\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert problems_of(Path("a.toml")) == ["a.toml: line 2: unit.nmae: unknown key; "
                                          "did you mean 'name'?"]


def test_unreadable_files_are_one_clear_problem(tmp_path: Path) -> None:
    (missing,) = problems_of(tmp_path / "nope.toml")
    assert missing.startswith(f"{tmp_path / 'nope.toml'}: file not found; ")
    (folder,) = problems_of(tmp_path)
    assert folder.startswith(f"{tmp_path}: cannot read the file")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"[unit]\n# caf\xe9\nname = 'x'\n")
    assert problems_of(latin1) == [f"{latin1}: line 2: not valid UTF-8; save the file as UTF-8"]


def test_a_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[unit]\nname = 'bom'\n")
    assert load_config(path).unit.name == "bom"


# --- building in code, modems, immutability ------------------------------------------------


def test_config_from_dict_takes_python_values_like_the_demo_does(tmp_path: Path) -> None:
    config = config_from_dict({
        "unit": {"data_dir": tmp_path, "own_numbers": ("+923001234567",)},
        "modems": [{"name": "a", "port": "loop://"}, {"name": "b", "port": "loop://"}],
    })
    assert config.source is None
    assert config.unit.own_numbers == ("+923001234567",)
    assert [m.port for m in config.modems] == ["loop://", "loop://"]  # loopbacks never clash
    assert config.registry.trusted_root == Path.cwd() / "registry_root.json"
    assert config.registry_path == tmp_path / "registry.db"


def test_empty_file_loads_defaults_but_cannot_run() -> None:
    config = config_from_text("", base_dir=Path("/etc/nsor"))
    assert config.modems == ()
    assert config.registry.timezone == "Asia/Karachi"
    with pytest.raises(ConfigError, match=r"^<config>: modems: no \[\[modems\]\] table; add"):
        config.require_modems()
    disabled = config_from_text(MODEM + "enabled = false\n", base_dir=Path("/etc/nsor"))
    with pytest.raises(ConfigError, match="every .* has enabled = false"):
        disabled.require_modems()


def test_config_is_frozen() -> None:
    config = load_config(SHIPPED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.unit = config.unit  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.modems[0].baudrate = 9600  # type: ignore[misc]
    assert isinstance(config.modems, tuple) and isinstance(config.alarms.sms_numbers, tuple)


# --- any input: a Config or a ConfigError, nothing else ------------------------------------

_KEYS = sorted({f.name for cls in _schema_sections().values() for f in dataclasses.fields(cls)}
               | {"modem", "x"})
_SCALARS = st.one_of(st.booleans(), st.integers(-10**6, 10**7), st.floats(), st.text(max_size=12),
                     st.sampled_from(["/dev/x", "loop://", "*111#", "(", "", "none", "SM",
                                      "127.0.0.1:1", "Asia/Karachi", "02:30", "+923001234567"]))
_VALUES: Any = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(_schema_sections()) + ["modem"]), _VALUES,
                       max_size=5))
def test_any_data_gives_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    try:
        config = config_from_dict(data, base_dir=Path("/etc/nsor"))
    except ConfigError as exc:
        assert exc.problems and all(p.startswith("<config>: ") for p in exc.problems)
    else:
        assert isinstance(config, Config)


# --- where: the modem by its name, the line of the key --------------------------------------

def test_problems_name_the_modem_and_the_line_around_multiline_values() -> None:
    text = ('[unit]\nown_numbers = [\n  "+923001234567",  # [sim0]\n  "ops",\n]\n'
            "[[modems]]\nname = \"north\"\nport = \"/dev/nsor/modem0\"\n"
            "[[modems]]\nport = \"/dev/nsor/modem1\"\nbaudrate = 1\n"
            "[[modems]]\nname = \"south\"  # the third\nport = \"/dev/nsor/modem2\"\n"
            "hourly_cap = -1\n")
    assert text_problems(text) == [
        't.toml: line 2: unit.own_numbers[1]: "ops" is not valid; expected a phone number: '
        'digits with an optional "+", e.g. "+923001234567"',
        "t.toml: line 9: modem #2 (no name).name: missing required key; add e.g. "
        'name = "sim1"',
        "t.toml: line 11: modem #2 (no name).baudrate: 1 is not a standard baud rate (choose "
        "one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)",
        't.toml: line 15: modem "south".hourly_cap: -1 is out of range; choose a value from '
        "1 to 100000"]
