"""The reconciler's transition table: the spec of contract 4.3's protocol.

``first`` is the engine with the lower label (``a``), ``second`` the other:
locks are always taken first-then-second and released second-then-first.
"""

from __future__ import annotations

import enum

__all__ = ["RECONCILE_TRANSITIONS", "ReconcileInput", "ReconcileState"]


class ReconcileState(enum.Enum):
    IDLE = "idle"
    ACQUIRING_FIRST = "acquiring_first"  #: lock on the lower label (a)
    ACQUIRING_SECOND = "acquiring_second"
    READING_FIRST = "reading_first"  #: health, under both locks
    READING_SECOND = "reading_second"
    FETCHING = "fetching"  #: GET the winner's snapshot
    APPLYING = "applying"  #: PUT it to the loser
    RELEASING_SECOND = "releasing_second"
    RELEASING_FIRST = "releasing_first"
    BACKING_OFF = "backing_off"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ReconcileInput(enum.Enum):
    START = "start"
    GRANTED = "granted"  #: 200 on acquire
    BUSY = "busy"  #: 409 on acquire, rounds left
    BUSY_SPENT = "busy_spent"  #: 409 on acquire, the budget spent
    OK = "ok"  #: the step's call answered as it should
    ERROR = "error"  #: it did not (failed, timed out, unexpected answer)
    LOST = "lost"  #: a held lock was lost before this step's end
    RELEASED = "released"  #: a release answered (200, or 404: gone), or failed twice
    RELEASE_AGAIN = "release_again"  #: a first release got no answer: send it once more
    RELEASED_RETRY = "released_retry"  #: the last release, then back off
    RELEASED_SUCCEED = "released_succeed"
    RELEASED_FAIL = "released_fail"
    WAKE = "wake"  #: the back-off ran out


_S, _I = ReconcileState, ReconcileInput

#: The reconciler's legal moves; anything else raises LocalProtocolError.
RECONCILE_TRANSITIONS: dict[tuple[ReconcileState, ReconcileInput], ReconcileState] = {
    (_S.IDLE, _I.START): _S.ACQUIRING_FIRST,
    (_S.ACQUIRING_FIRST, _I.GRANTED): _S.ACQUIRING_SECOND,
    (_S.ACQUIRING_FIRST, _I.BUSY): _S.BACKING_OFF,
    (_S.ACQUIRING_FIRST, _I.BUSY_SPENT): _S.FAILED,
    (_S.ACQUIRING_FIRST, _I.ERROR): _S.FAILED,
    (_S.ACQUIRING_SECOND, _I.GRANTED): _S.READING_FIRST,
    (_S.ACQUIRING_SECOND, _I.BUSY): _S.RELEASING_FIRST,
    (_S.ACQUIRING_SECOND, _I.BUSY_SPENT): _S.RELEASING_FIRST,
    (_S.ACQUIRING_SECOND, _I.ERROR): _S.RELEASING_FIRST,
    (_S.ACQUIRING_SECOND, _I.LOST): _S.RELEASING_SECOND,
    (_S.READING_FIRST, _I.OK): _S.READING_SECOND,
    (_S.READING_FIRST, _I.ERROR): _S.RELEASING_SECOND,
    (_S.READING_FIRST, _I.LOST): _S.RELEASING_SECOND,
    (_S.READING_SECOND, _I.OK): _S.FETCHING,
    (_S.READING_SECOND, _I.ERROR): _S.RELEASING_SECOND,
    (_S.READING_SECOND, _I.LOST): _S.RELEASING_SECOND,
    (_S.FETCHING, _I.OK): _S.APPLYING,
    (_S.FETCHING, _I.ERROR): _S.RELEASING_SECOND,
    (_S.FETCHING, _I.LOST): _S.RELEASING_SECOND,
    (_S.APPLYING, _I.OK): _S.RELEASING_SECOND,
    (_S.APPLYING, _I.ERROR): _S.RELEASING_SECOND,
    (_S.RELEASING_SECOND, _I.RELEASED): _S.RELEASING_FIRST,
    (_S.RELEASING_SECOND, _I.RELEASE_AGAIN): _S.RELEASING_SECOND,
    (_S.RELEASING_FIRST, _I.RELEASE_AGAIN): _S.RELEASING_FIRST,
    (_S.RELEASING_FIRST, _I.RELEASED_RETRY): _S.BACKING_OFF,
    (_S.RELEASING_FIRST, _I.RELEASED_SUCCEED): _S.SUCCEEDED,
    (_S.RELEASING_FIRST, _I.RELEASED_FAIL): _S.FAILED,
    (_S.BACKING_OFF, _I.WAKE): _S.ACQUIRING_FIRST,
}
del _S, _I
