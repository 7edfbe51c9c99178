"""The one way an SMS is queued: a reply to a citizen, an alarm to a technician, a test.

Every queued SMS gets the same treatment: its number in one canonical form (so a reply
and its delivery report, or a guard's count, meet on the same key), its part count from
the same planner the sender uses (what the queue, its journal line and ``status`` show
until the reply is encoded and the count is exact; caps and pacing count parts sent), and
one committed row in ``outbound`` (with the inbound rows it answers marked in the same
transaction). What happens next is the outbox's business (:mod:`.outbox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..modem.pdu import count_parts, normalise_number
from .table import ReplyTable


class Queued(NamedTuple):
    """The outbound row's id, and the number it goes to in canonical form."""

    id: int
    recipient: str


def queue_sms(*, to: str, country_code: str, text: str, kind: str,
              preferred_modem: str | None, inbound_ids: Sequence[int] = (),
              ref16: bool = False) -> Queued:
    """Queue ``text`` for ``to`` (any written form of the number): committed on return, or
    with the caller's write transaction. The message store must be open. ``ref16``: some
    modem uses 16-bit concatenation references (one more UDH octet per part)."""
    recipient = normalise_number(to, country_code)
    parts, _ = count_parts(text, ref16=ref16)
    oid = ReplyTable().queue_reply(recipient=recipient, text=text, parts=parts,
                                   preferred_modem=preferred_modem, inbound_ids=inbound_ids,
                                   kind=kind)
    return Queued(oid, recipient)
