"""Finite message storage of a simulated modem (TS 27.005 §3.2.2 <mem1..3>).

Real SIMs hold 20-50 messages and a full SIM is a classic field failure: the network keeps
the message and retries while the unit never hears of it. So storage here is finite and
indexed like the real thing: "SM" (the SIM, survives a module swap), "ME" (module flash),
and "MT", Quectel's view of SM followed by ME in one index space.
"""

from __future__ import annotations

from dataclasses import dataclass

# TS 27.005 §3.1 <stat> in PDU mode.
REC_UNREAD, REC_READ, STO_UNSENT, STO_SENT = 0, 1, 2, 3


@dataclass
class StoredMessage:
    """One occupied slot: the PDU as ``+CMGR`` shows it, and its <stat>."""

    pdu: str
    tpdu_length: int
    stat: int = REC_UNREAD
    kind: str = "deliver"  # or "status-report"


class Memory:
    """A fixed number of slots numbered from ``first_index``."""

    def __init__(self, name: str, capacity: int, first_index: int) -> None:
        self.name = name
        self.capacity = capacity
        self.first_index = first_index
        self._slots: dict[int, StoredMessage] = {}

    @property
    def used(self) -> int:
        return len(self._slots)

    @property
    def total(self) -> int:
        return self.capacity

    def in_range(self, index: int) -> bool:
        return self.first_index <= index < self.first_index + self.capacity

    def full(self) -> bool:
        return self.free_index() is None

    def free_index(self) -> int | None:
        for index in range(self.first_index, self.first_index + self.capacity):
            if index not in self._slots:
                return index
        return None

    def put(self, message: StoredMessage) -> int | None:
        index = self.free_index()
        if index is not None:
            self._slots[index] = message
        return index

    def get(self, index: int) -> StoredMessage | None:
        return self._slots.get(index)

    def delete(self, index: int) -> None:
        self._slots.pop(index, None)

    def items(self) -> list[tuple[int, StoredMessage]]:
        return sorted(self._slots.items())


class CombinedMemory(Memory):
    """Quectel's "MT": the SIM's slots, then the module's, in one index space."""

    def __init__(self, name: str, parts: list[Memory]) -> None:
        super().__init__(name, 0, parts[0].first_index)
        self._parts = parts

    @property
    def used(self) -> int:
        return sum(p.used for p in self._parts)

    @property
    def total(self) -> int:
        return sum(p.capacity for p in self._parts)

    def in_range(self, index: int) -> bool:
        return self._locate(index) is not None

    def _locate(self, index: int) -> tuple[Memory, int] | None:
        offset = index - self.first_index
        for part in self._parts:
            if 0 <= offset < part.capacity:
                return part, part.first_index + offset
            offset -= part.capacity
        return None

    def _global(self, part: Memory, local: int) -> int:
        base = self.first_index
        for p in self._parts:
            if p is part:
                return base + local - p.first_index
            base += p.capacity
        raise ValueError(f"memory {part.name} is not part of {self.name}")

    def free_index(self) -> int | None:
        for part in self._parts:
            local = part.free_index()
            if local is not None:
                return self._global(part, local)
        return None

    def put(self, message: StoredMessage) -> int | None:
        for part in self._parts:
            local = part.put(message)
            if local is not None:
                return self._global(part, local)
        return None

    def get(self, index: int) -> StoredMessage | None:
        where = self._locate(index)
        return where[0].get(where[1]) if where else None

    def delete(self, index: int) -> None:
        where = self._locate(index)
        if where:
            where[0].delete(where[1])

    def items(self) -> list[tuple[int, StoredMessage]]:
        return [(self._global(p, i), m) for p in self._parts for i, m in p.items()]


def build_memories(storages: tuple[str, ...], sim_capacity: int, me_capacity: int,
                   first_index: int) -> dict[str, Memory]:
    """The memories a profile offers; "MT" shares the SM and ME slots."""
    sm = Memory("SM", sim_capacity, first_index)
    me = Memory("ME", me_capacity, first_index)
    out: dict[str, Memory] = {}
    for name in storages:
        out[name] = {"SM": sm, "ME": me}.get(name) or CombinedMemory(name, [sm, me])
    return out
