"""What the running service does for ``nsor balance`` and ``nsor ussd`` (the control socket).

Each request runs in the control socket's thread and waits for the modem's owner thread,
which sends the USSD code between two of its own transactions (``Modem.ussd``). The answer
is the operator's raw text and the amount the modem's ``balance_pattern`` extracts from it,
so a technician can test a pattern against a real answer without stopping the unit.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from ..errors import ApplianceError, ModemError
from ..modem.ussd import UssdAnswer, balance_from

if TYPE_CHECKING:
    from .control import Handler
    from .unit import Service

#: What a USSD code may hold (TS 22.030 §6.5.2: digits, * and #); nothing that could close
#: the quoted string of AT+CUSD.
USSD_CODE = re.compile(r"[0-9*#+]{1,40}")

#: Longest wait for a modem's answer: a send in flight first (send_timeout_s), then the
#: network's USSD round trip (up to 20 s).
ANSWER_WAIT_S = 90.0


class ServiceRequests:
    def __init__(self, service: Service) -> None:
        self.service = service

    def handlers(self) -> dict[str, Handler]:
        return {"balance": self.balance, "ussd": self.ussd}

    def _modem_config(self, name: str) -> Any:
        cfg = next((m for m in self.service.config.enabled_modems if m.name == name), None)
        if cfg is None or name not in self.service.modems:
            names = ", ".join(self.service.modems) or "(none)"
            raise ApplianceError(f"no enabled modem {name!r} in the running service; "
                                 f"choose one of: {names}")
        return cfg

    def ussd(self, request: dict[str, Any]) -> dict[str, Any]:
        name, code = str(request.get("modem") or ""), str(request.get("code") or "")
        cfg = self._modem_config(name)
        if not USSD_CODE.fullmatch(code):
            raise ApplianceError(f"{code!r} is not a USSD code; write digits, * and #, "
                                 'e.g. "*123#"')
        future = self.service.modems[name].ussd(code)
        return {"modems": [self._result(name, code, cfg.balance_pattern, future)]}

    def balance(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted = request.get("modem")
        configs = ([self._modem_config(str(wanted))] if wanted
                   else list(m for m in self.service.config.enabled_modems
                             if m.name in self.service.modems))
        futures: list[tuple[Any, Future[UssdAnswer | None] | None]] = []
        for cfg in configs:  # all modems at once: each owner thread sends its own request
            futures.append((cfg, self.service.modems[cfg.name].ussd(cfg.balance_ussd,
                                                                     balance=True)
                            if cfg.balance_ussd else None))
        results = []
        for cfg, future in futures:
            if future is None:
                results.append({"modem": cfg.name, "code": "", "error": "no balance_ussd "
                                f"in the [[modems]] table of {cfg.name}; set e.g. "
                                'balance_ussd = "*111#"'})
            else:
                results.append(self._result(cfg.name, cfg.balance_ussd, cfg.balance_pattern,
                                            future))
        return {"modems": results}

    @staticmethod
    def _result(name: str, code: str, pattern: str,
                future: Future[UssdAnswer | None]) -> dict[str, Any]:
        result: dict[str, Any] = {"modem": name, "code": code, "pattern": pattern,
                                  "at": time.time()}
        try:
            answer = future.result(timeout=ANSWER_WAIT_S)
        except FutureTimeout:
            future.cancel()
            result["error"] = (f"modem {name} did not get to the request within "
                               f"{ANSWER_WAIT_S:g} s (busy sending, or reopening)")
            return result
        except ModemError as exc:
            result["error"] = str(exc)
            return result
        if answer is None:
            result["error"] = f"no answer from the network to {code} within 20 s"
            return result
        result.update(answer=answer.text, status=answer.status, dcs=answer.dcs,
                      amount=balance_from(answer.text, pattern) if pattern else None)
        return result
