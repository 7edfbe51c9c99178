"""The unit's own state: ``state.db`` and what lives beside it.

* :mod:`.store` — ``state.db`` opened (Peewee over SQLite, WAL), its tables, and the
  inbound queries (the outbound ones are the outbox's, :mod:`appliance.outbox.table`);
* :mod:`.migrate` — schema versions of ``state.db`` and ``registry.db``;
* :mod:`.audit` — the audit log of queries (keyed hashes, never a clear CNIC);
* :mod:`.secret` — the unit's secret key for those hashes;
* :mod:`.retention` — texts and numbers erased after the retention window;
* :mod:`.history` — one row per minute for the status page's charts.
"""
