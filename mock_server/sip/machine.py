"""A state machine as a data table: ``(state, event) -> next state``, nothing else (h11's shape).

The SIP transactions and dialogs subclass :class:`Machine` with their own enums and table.
An event the table does not list for the current state is a bug in the caller, so it raises.
States and events are ``IntEnum`` members: they hash in C, which keeps a step at a dict lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Generic, TypeVar

from mock_server.sip.timers import TimerHandle

S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


class InvalidTransition(RuntimeError):
    pass


@dataclass(eq=False)
class Machine(Generic[S, E]):
    """State, the table that moves it, and the timers that end with it.

    Subclasses are dataclasses that set ``TABLE`` and declare ``state`` as a keyword-only field
    with its initial value.
    """

    TABLE: ClassVar[dict]  # dict[tuple[S, E], S], one per subclass
    timers: list[TimerHandle] = field(default_factory=list, kw_only=True)

    def advance(self, event: E) -> S:
        """Take the step the table gives for ``event``; ``self.state`` is the subclass's field."""
        try:
            self.state = self.TABLE[(self.state, event)]
        except KeyError:
            raise InvalidTransition(f"{type(self).__name__}: {event.name} in state {self.state.name}") from None
        return self.state

    def can(self, event: E) -> bool:
        return (self.state, event) in self.TABLE

    def cancel_timers(self) -> None:
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()
