"""appliance.modem.interview: the questions the engine and probe both ask, through a
command-running callable (no port, no pty): what is asked, in which order, and what a
refusal does."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from appliance.errors import ModemCommandError
from appliance.modem.atregistration import Registration
from appliance.modem.atvalues import Operator, Signal
from appliance.modem.interview import Identity, identify, read_imsi, read_network


class Modem:
    """Answers from a table; a command mapped to None is refused (+CME ERROR)."""

    def __init__(self, answers: Mapping[str, tuple[str, ...] | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, command: str) -> tuple[str, ...]:
        self.asked.append(command)
        answer = self.answers.get(command, ())
        if answer is None:
            raise ModemCommandError(f"{command}: +CME ERROR: 4", kind="CME", code=4)
        return answer


EC25 = {"AT+CGMI": ("Quectel",), "AT+CGMM": ("EC25",),
        "AT+CGMR": ("Revision: EC25EFAR06A03M4G",), "AT+CGSN": ("861234567890123",),
        "AT+CIMI": ("410010123456789",),
        "AT+CSQ": ("+CSQ: 21,99",), "AT+CREG?": ("+CREG: 2,1,\"84CD\",\"0AB1\",7",),
        "AT+CEREG?": ("+CEREG: 2, 1, 0001,00AB12CD,7",), "AT+CGREG?": ("+CGREG: 0,4",),
        "AT+COPS?": ('+COPS: 0,0,"Jazz",7',)}


def test_identify_asks_in_order() -> None:
    modem = Modem(EC25)
    assert identify(modem) == Identity("Quectel", "EC25", "EC25EFAR06A03M4G",
                                       "861234567890123")
    assert modem.asked == ["AT+CGMI", "AT+CGMM", "AT+CGMR", "AT+CGSN"]
    modem.asked.clear()
    ident = identify(modem, imsi=True)
    assert modem.asked[-1] == "AT+CIMI" and ident.imsi == "410010123456789"
    assert ident.as_dict() == {"manufacturer": "Quectel", "model": "EC25",
                               "revision": "EC25EFAR06A03M4G", "imei": "861234567890123",
                               "imsi": "410010123456789"}
    assert read_imsi(Modem({})) == ""


def test_identify_unanswered_fields_are_empty() -> None:
    assert identify(Modem({}), imsi=True) == Identity()


def test_read_network() -> None:
    modem = Modem(EC25)
    reading = read_network(modem, ("+CREG", "+CGREG", "+CEREG"))
    assert modem.asked == ["AT+CSQ", "AT+CREG?", "AT+CGREG?", "AT+CEREG?", "AT+COPS=3,0",
                           "AT+COPS?"]
    assert reading.signal == Signal(21, 99)
    assert reading.registrations == {
        "+CREG": Registration("+CREG", 1, 2, "84CD", "0AB1", 7),
        "+CGREG": Registration("+CGREG", 4, 0),
        "+CEREG": Registration("+CEREG", 1, 2, "0001", "00AB12CD", 7)}
    assert reading.operator == Operator(0, 0, "Jazz", 7)


def test_refused_registration_is_skipped_and_quiet_asks_the_rest() -> None:
    loud = Modem(dict(EC25, **{"AT+CEREG?": None}))
    quiet = Modem(loud.answers)
    reading = read_network(loud, ("+CREG", "+CEREG", "+CGREG"), quiet=quiet)
    assert set(reading.registrations) == {"+CREG", "+CGREG"}
    assert loud.asked == ["AT+CSQ", "AT+CREG?", "AT+COPS=3,0", "AT+COPS?"]
    assert quiet.asked == ["AT+CEREG?", "AT+CGREG?"]


@pytest.mark.parametrize("refused", ["AT+COPS=3,0", "AT+COPS?"])
def test_refused_operator_is_none(refused: str) -> None:
    modem = Modem(dict(EC25, **{refused: None}))
    reading = read_network(modem, ("+CREG",))
    assert reading.operator is None and reading.signal == Signal(21, 99)
    assert "AT+COPS?" not in modem.asked or refused == "AT+COPS?"


def test_no_operator_and_no_signal() -> None:
    reading = read_network(Modem({"AT+COPS?": ("+COPS: 0",), "AT+CSQ": ("+CSQ: 99,99",)}),
                           ("+CREG",))
    assert reading.operator is None and reading.registrations == {}
    assert reading.signal is not None and reading.signal.bars == 0


def test_refused_signal_is_the_callers() -> None:
    with pytest.raises(ModemCommandError):
        read_network(Modem({"AT+CSQ": None}), ("+CREG",))
