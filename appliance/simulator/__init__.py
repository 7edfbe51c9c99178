"""Virtual GSM modems on ptys and the virtual network around them.

A peer of the engine, not part of it: the production path (``appliance.modem``, the
service) never imports this package; only the ``simulate`` and ``demo`` commands load it,
lazily (the import-linter contracts in ``.importlinter`` keep it so). Its PDU codec
(``pdu.py``, ``pdu_fields.py``, ``gsm7.py``) is written independently of the engine's, so
that each checks the other.

``bank.py`` is the entry point (:class:`~appliance.simulator.bank.Simulator`: a bank of
modems and their network); ``modem.py`` one modem; ``at*.py`` its AT interpreter;
``serial_side.py`` and ``port.py`` its pty; ``network.py`` the SMSC and handsets;
``profiles.py`` the modem families and operators it impersonates; ``faults.py`` the faults
it can show; ``cli.py`` the ``simulate`` command; ``client.py`` a plain AT client for tests.
"""
