"""The rules: pure functions of their inputs, with no I/O and no state. They count SMS parts
with the modem layer's codec (pure too), and know nothing of modems.

* :mod:`.cnic` — a CNIC found, normalised and checked in a citizen's text;
* :mod:`.responder` — the reply to a text, given a lookup and the reply templates;
* :mod:`.reply_budget` — every reply the templates can make fits ``replies.max_parts``;
* :mod:`.inbound_age` — whether an old message is answered;
* :mod:`.when` — ``--since`` as people write it;
* :mod:`.wording` — plurals for log lines and messages.
"""
