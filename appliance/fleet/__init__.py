"""The fleet link: a unit's outbound MQTT connection to the centre's broker (docs/fleet.md).

* :mod:`.topics` -- pure: topic names, the heartbeat, hit report and "latest version"
  payloads (no I/O, no clock, no paho);
* :mod:`.hits` -- hit reports waiting in ``state.db`` until the broker's PUBACK;
* :mod:`.mqtt` -- one paho client built from ``[fleet]`` (TLS, credentials, will);
* :mod:`.link` -- the unit's side: connection, heartbeats, the hit-report pump, update hints;
* :mod:`.centre` -- the centre's side, a broker client too: ``fleet watch``, ``fleet
  hits``, and the hint that ``registry publish --notify`` posts.

Nothing here is imported unless ``[fleet] enabled = true`` (or a ``fleet`` command runs),
so a unit without a link does not even load paho.
"""
