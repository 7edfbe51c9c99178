"""Every AT command a simulated modem answers: the general ones and the SMS ones, joined
explicitly (a command defined in both is an error at import, not a silent override)."""

from __future__ import annotations

from appliance.simulator import at_general, at_sms
from appliance.simulator.at import CommandTable

COMMANDS: CommandTable = at_general.COMMANDS | at_sms.COMMANDS
