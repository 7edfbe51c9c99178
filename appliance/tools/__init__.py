"""The technician's commands (``nsor …``), each a thin shell over the layers below.

* :mod:`.techcli` — ``status``, ``send-test``, ``alarms`` and friends;
* :mod:`.doctor` — ``doctor``: is this unit ready for the field?
* :mod:`.probe` — ``probe``: find and interview the modems on this machine;
* :mod:`.lookup` — ``lookup``: one CNIC against the installed registry, offline;
* :mod:`.balance` — ``balance`` and ``ussd`` through the running service;
* :mod:`.db` — ``db status | migrate | check``;
* :mod:`.backup` — ``backup``: a consistent copy of the unit's state;
* :mod:`.demo` — ``demo``: the unit on simulated modems (it alone loads the simulator).
"""
