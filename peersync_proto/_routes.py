"""The nine endpoints: which path and method reach which handler, and how.

Routing is data: :data:`ROUTES` maps a path pattern to the methods it allows,
each with its auth class. Unknown path -> 404, known path with a wrong method
-> 405 with ``Allow``.
"""

from __future__ import annotations

import enum

import attrs

from ._errors import RemoteProtocolError

__all__ = ["LOCK_PATH_PREFIX", "ROUTES", "Auth", "Endpoint", "Route", "route"]

LOCK_PATH_PREFIX = "/api/sync/reconcile-lock/"


class Auth(enum.Enum):
    OPEN = "open"
    CONTROL_PLANE = "control plane"
    BEARER = "bearer"


class Endpoint(enum.Enum):
    PEER_HEALTH = 1
    FORCE_LEADER = 2
    SYNC_HEALTH = 3
    GET_STATE = 4
    APPLY_STATE = 5
    ACQUIRE_LOCK = 6
    REFRESH_LOCK = 7
    RELEASE_LOCK = 8
    LOCK_STATUS = 9


@attrs.frozen(kw_only=True, slots=True)
class Route:
    endpoint: Endpoint
    auth: Auth
    #: Whether the endpoint reads a JSON body (so Content-Type is checked).
    takes_body: bool
    #: The lock id from the path, for endpoints 7 and 8.
    lock_id: str | None = None


# path pattern -> {method: (endpoint, auth, takes_body)}
_Table = dict[str, dict[str, tuple[Endpoint, Auth, bool]]]

ROUTES: _Table = {
    "/api/peer/health": {"GET": (Endpoint.PEER_HEALTH, Auth.OPEN, False)},
    "/api/peer/force-leader": {"POST": (Endpoint.FORCE_LEADER, Auth.CONTROL_PLANE, True)},
    "/api/sync/health": {"GET": (Endpoint.SYNC_HEALTH, Auth.BEARER, False)},
    "/api/sync/state": {
        "GET": (Endpoint.GET_STATE, Auth.BEARER, False),
        "PUT": (Endpoint.APPLY_STATE, Auth.BEARER, True),
    },
    "/api/sync/reconcile-lock": {
        "GET": (Endpoint.LOCK_STATUS, Auth.BEARER, False),
        "POST": (Endpoint.ACQUIRE_LOCK, Auth.BEARER, True),
    },
    LOCK_PATH_PREFIX + "{lockId}": {
        "PUT": (Endpoint.REFRESH_LOCK, Auth.BEARER, True),
        "DELETE": (Endpoint.RELEASE_LOCK, Auth.BEARER, False),
    },
}


def route(method: str, target: str) -> Route:
    """Find the endpoint for a request, or raise 404 / 405."""
    path = target.split("?", 1)[0]
    lock_id: str | None = None
    pattern = path
    if path.startswith(LOCK_PATH_PREFIX) and "/" not in path[len(LOCK_PATH_PREFIX) :]:
        lock_id = path[len(LOCK_PATH_PREFIX) :]
        pattern = LOCK_PATH_PREFIX + "{lockId}"
        if not lock_id:
            pattern = path  # "/api/sync/reconcile-lock/" is not a lock path
    methods = ROUTES.get(pattern)
    if methods is None:
        raise RemoteProtocolError("No such endpoint.", status=404, code="not_found")
    found = methods.get(method)
    if found is None:
        allow = ", ".join(sorted(methods)).encode("ascii")
        raise RemoteProtocolError(
            f"Method {method[:16]!r} is not allowed here.",
            status=405,
            code="method_not_allowed",
            headers=((b"allow", allow),),
        )
    endpoint, auth, takes_body = found
    return Route(endpoint=endpoint, auth=auth, takes_body=takes_body, lock_id=lock_id)
