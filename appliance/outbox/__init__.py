"""The outbox: the life of a reply, from queued to delivered.

* :mod:`.outbox` — :class:`Outbox`, the port every modem's owner thread takes replies from,
  and the policy: queue, route, persist, retry or move or fail, recover;
* :mod:`.states` — the reply's state table and how a send error is classed;
* :mod:`.bank` — which modem sends the next reply, how fast, and which are resting;
* :mod:`.queue` — the one way an SMS is queued;
* :mod:`.table` — the outbound SQL.
"""

from .outbox import Outbox

__all__ = ["Outbox"]
