"""The life of an outbound reply, as data: states, legal moves, and how send errors are classed.

A reply moves through::

    queued ──► sending ──► sent ──► delivered
      ▲           │  │        └───► failed      (a permanent delivery report)
      │           │  └──► retry ──► sending   (temporary error, after a backoff)
      └───────────┘             └─► failed    (attempt limit reached)
    (crash or modem lost mid-send: back to queued, resumed at its first unsent part)

Every move goes through :func:`check_move`; an illegal one raises, so a bug cannot quietly
park a citizen's answer in a state nothing ever looks at.

A reply is encoded once (its parts, reference and PDUs persisted, see
:meth:`.table.ReplyTable.record_plan`) and every retry or resumption sends the parts not
yet sent, byte for byte, from the same SIM: the phone joins them to the parts it holds.
Delivery is **at least once** per part: a part on the air when the process died with no
recorded message reference (``AT+CMGS``) is sent again; the phone shows one message. Such
resumptions are counted (``Outbound.resends``), moves to another SIM after a part had left
too (``Outbound.splits``).
"""

from __future__ import annotations

import enum

from ..errors import IllegalMove, ModemCommandError, ModemGone, ModemTimeout


class State(str, enum.Enum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


MOVES: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.SENDING, State.FAILED}),
    State.SENDING: frozenset({State.SENT, State.RETRY, State.FAILED, State.QUEUED}),
    State.RETRY: frozenset({State.SENDING, State.FAILED, State.QUEUED}),
    State.SENT: frozenset({State.DELIVERED, State.FAILED}),
    State.DELIVERED: frozenset(),
    State.FAILED: frozenset(),
}

#: States in which a reply still waits for the radio.
PENDING = (State.QUEUED.value, State.RETRY.value, State.SENDING.value)


def check_move(current: str, new: str) -> None:
    cur, nxt = State(current), State(new)
    if nxt not in MOVES[cur]:
        raise IllegalMove(f"outbound reply cannot move from {cur.value} to {nxt.value}")


class ErrorClass(str, enum.Enum):
    """What a failed send means for the reply and for the modem."""

    TEMPORARY = "temporary"   # try again later, maybe on another modem
    PERMANENT = "permanent"   # this recipient/message will never go: fail the reply
    MODEM = "modem"           # this modem cannot send (credit, barring, no SIM): block it,
                              # hand the reply to another modem without spending an attempt
    LINK = "link"             # the link to the modem failed (timeout, unplugged): the radio
                              # may never have seen the reply; try again soon, on any modem,
                              # without spending one of the reply's attempts


# TS 27.005 §3.2.5 (+CMS ERROR) and TS 24.011 §8.2.5.4 (RP-cause values reported as CMS codes).
_PERMANENT_CMS = frozenset({
    1,    # unassigned (unallocated) number
    28,   # unidentified subscriber
    29,   # facility rejected
    96,   # invalid mandatory information
    300, 301, 302,  # ME failure / SMS service of ME reserved / operation not allowed
    303, 304, 305,  # operation not supported / invalid PDU mode parameter / invalid text mode
    325,  # invalid memory index... (not for send, but never retry)
})
_MODEM_CMS = frozenset({
    8,    # operator determined barring (prepaid credit exhausted on many networks)
    10,   # call barred
    21,   # short message transfer rejected (Jazz/Zong answer this when credit is out)
    50,   # requested facility not subscribed (no SMS bundle)
    69,   # requested facility not implemented
    310,  # SIM not inserted
    311, 312, 316, 317, 318,  # SIM PIN/PUK required
    313, 314, 315,  # SIM failure / busy / wrong
    330,  # SMSC address unknown
})


def classify(exc: BaseException) -> ErrorClass:
    """Class a send failure. Unknown codes are temporary: retrying is bounded by the attempt
    limit, while calling an unknown code permanent would drop a reply on a guess. (That
    covers the codes seen as transient in the field: network out of order or congested
    22-127, no service 331/332, 500, and SIMCom's 512-515.)"""
    if isinstance(exc, ModemCommandError):
        if exc.kind == "CMS" and exc.code is not None:
            if exc.code in _MODEM_CMS:
                return ErrorClass.MODEM
            if exc.code in _PERMANENT_CMS:
                return ErrorClass.PERMANENT
            return ErrorClass.TEMPORARY
        if exc.kind == "CME" and exc.code in (10, 11, 12, 13, 14, 15, 16, 17, 18):
            return ErrorClass.MODEM  # TS 27.007 §9.2.1: SIM not inserted / PIN / PUK / failure
        return ErrorClass.TEMPORARY
    if isinstance(exc, (ModemTimeout, ModemGone)):
        return ErrorClass.LINK
    return ErrorClass.TEMPORARY


