"""Modem families and operators the simulator can impersonate.

A bank in the field mixes modems bought at different times, and each family differs in
ways that break naive AT code: whether echo is on after power-up, which message storages
exist and which one receives, whether indexes start at 0 or 1, what an empty slot answers
to ``AT+CMGR``, and which unsolicited noise arrives uninvited. A profile is that list of
differences as data, so one bank can hold several families at once.

Identification strings follow the vendors' manuals (SIM800 Series AT Command Manual V1.10,
Quectel EC25 AT Commands Manual V2.0, Huawei HSPA Module AT Command Interface); SMSC numbers
and balances are fictitious.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModemProfile:
    """What distinguishes one modem family on the AT interface."""

    name: str
    manufacturer: str
    model: str
    revision: str
    ati: tuple[str, ...]
    echo: bool                      # V.250 E after power-up
    storages: tuple[str, ...]       # names offered by AT+CPMS=? (TS 27.005 §3.2.2)
    default_storage: tuple[str, str, str]
    me_capacity: int                # ME (module flash) slots, when "ME" is offered
    sim_capacity: int               # SM slots of the SIM fitted by default
    first_index: int                # SIM800 numbers slots from 1, Quectel/Huawei from 0
    cnmi_default: tuple[int, int, int, int, int]
    cmgr_empty_is_error: bool       # Quectel: +CMS ERROR: 321 for an empty slot; SIM800: OK
    boot_urcs: tuple[str, ...]      # what the module prints when it powers up
    noise_urc: str                  # injected by the urc_in_response fault when idle
    periodic_urcs: tuple[str, ...] = ()
    periodic_interval: float = 0.0  # seconds between periodic_urcs; 0 = never
    # TS 27.005 §3.4.1: the AT+CNMI=? answer, and the only values AT+CNMI= accepts.
    cnmi_ranges: str = "(0-2),(0-3),(0,2),(0-2),(0,1)"
    # TS 27.005 §3.2.2 <mem3>: where received messages may go, when narrower than storages
    # (Cinterion: "ME" can be read and written but does not receive).
    receive_storages: tuple[str, ...] = ()
    # TS 27.007 §7.2, §10.1.20, §10.1.22: the registration reports the family has, and the
    # <stat> each says once registered (missing: 1). An LTE module registered "SMS only"
    # says +CREG 6 while its +CGREG stays 0 and +CEREG is 1.
    registration: tuple[str, ...] = ("+CREG", "+CGREG")
    registered_stat: dict[str, int] = field(default_factory=dict, hash=False)
    unquoted_location: bool = False  # +CREG: 1, 84CD, 0AB1 (no quotes, spaces)
    ussd_packed: bool = False        # Huawei: AT+CUSD takes the code as packed GSM-7 hex

    def cnmi_allowed(self) -> list[tuple[int, ...]]:
        """``(0-2),(0,1),(0),…`` → the values each of the five parameters accepts."""
        out: list[tuple[int, ...]] = []
        for group in self.cnmi_ranges.split("),"):
            values: list[int] = []
            for part in group.strip("() ").split(","):
                lo, _, hi = part.partition("-")
                values.extend(range(int(lo), int(hi or lo) + 1))
            out.append(tuple(values))
        return out + [(0,)] * (5 - len(out))


PROFILES: dict[str, ModemProfile] = {
    "sim800": ModemProfile(
        name="sim800", manufacturer="SIMCOM_Ltd", model="SIM800L",
        revision="Revision:1418B04SIM800L24", ati=("SIM800 R14.18",), echo=True,
        storages=("SM",), default_storage=("SM", "SM", "SM"), me_capacity=0,
        sim_capacity=30, first_index=1, cnmi_default=(2, 1, 0, 0, 0),
        cmgr_empty_is_error=False,
        boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"),
        noise_urc='*PSUTTZ: 25/11/22,9,30,0,"+20",0'),
    "ec25": ModemProfile(
        name="ec25", manufacturer="Quectel", model="EC25",
        revision="EC25EFAR06A06M4G", ati=("Quectel", "EC25", "Revision: EC25EFAR06A06M4G"),
        echo=True, storages=("SM", "ME", "MT"), default_storage=("ME", "ME", "ME"),
        me_capacity=255, sim_capacity=30, first_index=0, cnmi_default=(2, 1, 0, 0, 0),
        cmgr_empty_is_error=True,
        boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE"),
        noise_urc='+QIND: "csq",17,99', registration=("+CREG", "+CGREG", "+CEREG")),
    "huawei": ModemProfile(
        name="huawei", manufacturer="huawei", model="E173",
        revision="11.126.85.00.209",
        ati=("Manufacturer: huawei", "Model: E173", "Revision: 11.126.85.00.209",
             "+GCAP: +CGSM,+DS,+ES"),
        echo=True, storages=("SM", "ME"), default_storage=("SM", "SM", "SM"),
        me_capacity=100, sim_capacity=30, first_index=0, cnmi_default=(0, 0, 0, 0, 0),
        cmgr_empty_is_error=True,
        boot_urcs=("^BOOT:20358145,0,0,0,72", "^SIMST:1"),
        noise_urc="^RSSI:17",
        periodic_urcs=("^BOOT:20358145,0,0,0,72", "^RSSI:17", "^MODE:3,2"),
        periodic_interval=3.0, ussd_packed=True),
    # An LTE Cat-1 module on an LTE-only cell, attached for SMS over SGs "SMS only"
    # (TS 27.007 §7.2 <stat> 6): +CREG 6, +CEREG 1, +CGREG 0; location codes unquoted with
    # spaces, as some firmware prints them. Strings after u-blox's LARA-R6 AT manual.
    "ublox_lte": ModemProfile(
        name="ublox_lte", manufacturer="u-blox", model="LARA-R6001D", revision="03.15",
        ati=("Manufacturer: u-blox", "Model: LARA-R6001D", "Revision: 03.15"),
        echo=True, storages=("ME", "SM", "MT"), default_storage=("ME", "ME", "ME"),
        me_capacity=150, sim_capacity=30, first_index=1, cnmi_default=(1, 0, 0, 0, 0),
        cmgr_empty_is_error=False, boot_urcs=("+CPIN: READY",), noise_urc="+UUPSDD: 0",
        cnmi_ranges="(0-2),(0-3),(0-3),(0-2),(0,1)",
        registration=("+CREG", "+CGREG", "+CEREG"),
        registered_stat={"+CREG": 6, "+CGREG": 0, "+CEREG": 1}, unquoted_location=True),
    # A Cinterion/Thales module that allows only <bfr> 1 and no status reports
    # (AT+CNMI=? answers (0-2),(0,1),(0,2),(0),(1)) and does not receive into "ME".
    "cinterion": ModemProfile(
        name="cinterion", manufacturer="Cinterion", model="ELS61-E",
        revision="REVISION 01.000", ati=("Cinterion", "ELS61-E", "REVISION 01.000"),
        echo=True, storages=("ME", "SM", "MT"), receive_storages=("SM", "MT"),
        default_storage=("ME", "ME", "SM"), me_capacity=25, sim_capacity=30, first_index=1,
        cnmi_default=(0, 0, 0, 0, 1), cmgr_empty_is_error=False, boot_urcs=("^SYSSTART",),
        noise_urc="+CIEV: signal,3", cnmi_ranges="(0-2),(0,1),(0,2),(0),(1)",
        registration=("+CREG", "+CGREG", "+CEREG")),
    # A SIM800 whose firmware offers only <mt> 2 (AT+CNMI=? answers (2),(2),(0),(0),(0)):
    # every SMS comes straight to the unit as +CMT and is never stored on the SIM, the last
    # of the engine's +CNMI choices. What it must still do: lose none.
    "sim800_cmt": ModemProfile(
        name="sim800_cmt", manufacturer="SIMCOM_Ltd", model="SIM800L",
        revision="Revision:1418B04SIM800L24", ati=("SIM800 R14.18",), echo=True,
        storages=("SM",), default_storage=("SM", "SM", "SM"), me_capacity=0,
        sim_capacity=30, first_index=1, cnmi_default=(2, 2, 0, 0, 0),
        cmgr_empty_is_error=False, cnmi_ranges="(2),(2),(0),(0),(0)",
        boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"),
        noise_urc='*PSUTTZ: 25/11/22,9,30,0,"+20",0'),
}


@dataclass(frozen=True)
class Operator:
    """A Pakistani mobile operator as the simulated network presents it."""

    long_name: str
    short_name: str
    mcc_mnc: str
    smsc: str
    balance_text: str  # formatted with balance=…, the +CUSD answer to *123#

    def balance_message(self, balance: float) -> str:
        return self.balance_text.format(balance=balance)


OPERATORS: dict[str, Operator] = {
    "Jazz": Operator("Jazz", "Jazz", "41001", "+923000000092",
                     "Your balance is Rs.{balance:.2f}. Jazz: dial *117# for offers."),
    "Zong": Operator("Zong", "Zong", "41004", "+923150000092",
                     "Zong: Apka balance Rs.{balance:.2f} hai. Offers k liye *6464# dial karein."),
    "Telenor": Operator("Telenor", "Telenor", "41006", "+923450000092",
                        "Telenor: Your balance is Rs.{balance:.2f}."),
    "Ufone": Operator("Ufone", "Ufone", "41003", "+923330000092",
                      "Ufone: Balance Rs.{balance:.2f}."),
}


def profile_named(name: str) -> ModemProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown modem profile {name!r}; choose one of "
                         f"{', '.join(sorted(PROFILES))}") from None


def operator_named(name: str) -> Operator:
    try:
        return OPERATORS[name]
    except KeyError:
        raise ValueError(f"unknown operator {name!r}; choose one of "
                         f"{', '.join(sorted(OPERATORS))}") from None
