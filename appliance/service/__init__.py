"""The running unit: wiring, lifecycle and answering.

* :mod:`.unit` — :class:`~.unit.Service`: store, registry, rules, outbox and modems wired
  together; the :class:`~appliance.modem.ports.InboxPort` of every modem;
* :mod:`.guard` — who is answered (abuse limits, own numbers) and the audit of each query;
* :mod:`.alarms` — alarms, and alarm SMS to technicians;
* :mod:`.control` and :mod:`.requests` — the control socket (``nsor balance``, ``ussd``);
* :mod:`.systemd` — readiness and watchdog notifications.
"""
