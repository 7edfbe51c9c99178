"""What a technician sees of a running unit, from its snapshot (``Service.snapshot``).

* :mod:`.server` — the HTTP server: the page, ``/status.json``, ``/metrics``;
* :mod:`.html` — the status page (Urdu and English);
* :mod:`.metrics` — the Prometheus exposition;
* :mod:`.text` — ``nsor status`` in 80 columns;
* :mod:`.words` — the labels in both languages;
* :mod:`.format` — durations, sizes and a modem's row, shared with ``doctor`` and the alarms.
"""
