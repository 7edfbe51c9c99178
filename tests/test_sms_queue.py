"""The one path that queues an SMS (reply, alarm, test): canonical number, the sender's
part count, one committed row, the answered inbound rows marked with it (a real state.db)."""

from __future__ import annotations

from appliance.modem.pdu import encode_submit
from appliance.outbox.queue import queue_sms
from appliance.state.store import Inbound, Outbound, Store


def test_a_national_number_is_queued_in_canonical_form(store: Store) -> None:
    queued = queue_sms(to="0300-1234567", country_code="92", text="test",
                       kind="test", preferred_modem="sim2")
    row = Outbound.get_by_id(queued.id)
    assert queued.recipient == row.recipient == "+923001234567"
    assert (row.text, row.kind, row.preferred_modem, row.status, row.parts) == \
        ("test", "test", "sim2", "queued", 1)


def test_the_part_count_is_what_the_sender_will_send(store: Store) -> None:
    text = "بچوں کی حفاظت " * 20  # UCS-2: 67 characters a part
    queued = queue_sms(to="+923001234567", country_code="92", text=text,
                       kind="alarm", preferred_modem=None)
    sent = encode_submit("+923001234567", text, reference=1)
    assert Outbound.get_by_id(queued.id).parts == len(sent) > 1


def test_the_answered_inbound_rows_point_at_the_reply(store: Store) -> None:
    ids = [store.record_inbound(modem="sim1", pdu_hash=f"{i}" * 32, pdu="07", text="x",
                                sender="+923001234567", status="new")[0] for i in (1, 2)]
    queued = queue_sms(to="+923001234567", country_code="92", text="no record",
                       kind="no_record", preferred_modem="sim1", inbound_ids=ids)
    assert Outbound.get_by_id(queued.id).inbound == ids[0]
    assert [(r.status, r.reply) for r in Inbound.select().order_by(Inbound.id)] == \
        [("answered", queued.id)] * 2


def test_the_part_count_counts_a_16_bit_reference_where_a_modem_uses_one(store: Store) -> None:
    # 134 UCS-2 characters: two parts of 67 with an 8-bit reference, but a 16-bit one takes
    # one octet more of each part's header (66 characters a part): three parts.
    text = "ب" * 134
    counted = {}
    for ref16 in (False, True):
        queued = queue_sms(to="+923001234567", country_code="92", text=text, kind="reply",
                           preferred_modem=None, ref16=ref16)
        counted[ref16] = Outbound.get_by_id(queued.id).parts
    sent = {ref16: len(encode_submit("+923001234567", text, reference=1, ref16=ref16))
            for ref16 in (False, True)}
    assert counted == sent == {False: 2, True: 3}
