"""licensed: the licence-enforcement daemon of the Assistant product.

The public surface for other Python code is small: the status-file reader for
components that need to know the licence state, and the pure functions that decide
it. Everything else is the daemon's and the command lines' own business.
"""

from __future__ import annotations

from licensed.decision import Decision, State, evaluate
from licensed.expiry import expiry_instant
from licensed.licence import Licence, LicenceType
from licensed.messages import Audience, Message
from licensed.status import Status, StatusUnavailable, read_status

__all__ = [
    "Audience",
    "Decision",
    "Licence",
    "LicenceType",
    "Message",
    "State",
    "Status",
    "StatusUnavailable",
    "evaluate",
    "expiry_instant",
    "read_status",
]
