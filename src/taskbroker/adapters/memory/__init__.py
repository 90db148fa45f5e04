"""In-process adapters: :class:`MemoryLedger` and :class:`StubBroker` (fast tests, plugin
authors)."""

from taskbroker.adapters.memory.broker import Message, StubBroker
from taskbroker.adapters.memory.ledger import MemoryLedger

__all__ = ["MemoryLedger", "Message", "StubBroker"]
