"""What a shell checks from a request's head, before it reads the body.

A 64 MiB snapshot must not be read (let alone decoded) before the server
knows the caller may send it and that it fits. :func:`check_head` runs the
core's own checks that need only the method, the target and the headers
(route, auth, the body limit, the media type) and reports them in the order
the engine makes them, so a wrapper can answer from the head and close,
without a second copy of any rule. It is pure and reads only the config, so a
shell may call it on any thread, outside the engine's lock; it changes
nothing. The engine checks the same things again on the whole request.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._config import EngineConfig
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import Headers, _normalize_headers
from ._requests import body_too_large, check_bearer, check_content_type, check_control_plane
from ._routes import Auth, Endpoint, Route, route

__all__ = ["HeadCheck", "authenticate", "body_limit", "check_head"]

_optional_error = attrs.validators.optional(attrs.validators.instance_of(RemoteProtocolError))


def _positive(_inst: object, _attr: object, value: int) -> None:
    if type(value) is not int or value <= 0:
        raise LocalProtocolError(f"limit must be a positive int, got {value!r}")


@attrs.frozen(kw_only=True, slots=True)
class HeadCheck:
    """The verdict on a request head.

    ``error`` (route or auth: 404, 405, 401, 501) is answered before the size
    is looked at; ``limit`` is the most body bytes this request may carry
    (the snapshot limit for ``PUT /api/sync/state``, else the small-body
    limit), checked next; ``media_error`` (415) comes after the size, as the
    core orders them. ``snapshot`` says the body is a snapshot, which a shell
    may spool and run through :func:`decode_snapshot` elsewhere
    (``Request(predecoded=...)``). :meth:`refusal` puts the three in order.
    """

    error: RemoteProtocolError | None = attrs.field(default=None, validator=_optional_error)
    media_error: RemoteProtocolError | None = attrs.field(default=None, validator=_optional_error)
    limit: int = attrs.field(validator=_positive)
    snapshot: bool = False

    def refusal(self, body_length: int | None) -> RemoteProtocolError | None:
        """The first answer due, or ``None`` when the body may be read.

        ``body_length`` is the declared ``Content-Length`` (``None`` for a
        chunked body, whose size is not known yet), or, while reading a
        chunked body, the bytes read so far: past :attr:`limit` it is the
        ``413 body_too_large`` the core would give.
        """
        if self.error is not None:
            return self.error
        if body_length is not None and body_length > self.limit:
            return body_too_large(self.limit)
        return self.media_error


def body_limit(config: EngineConfig, endpoint: Endpoint) -> int:
    """Contract 2: the snapshot limit for ``PUT /api/sync/state``, else the small one."""
    if endpoint is Endpoint.APPLY_STATE:
        return config.max_snapshot_bytes
    return config.max_body_bytes


def authenticate(config: EngineConfig, found: Route, headers: Headers) -> None:
    """The endpoint's auth class (contract 2): raises 401 or 501, else returns."""
    if found.auth is Auth.CONTROL_PLANE:
        check_control_plane(headers, config.control_plane_secret)
    elif found.auth is Auth.BEARER:
        check_bearer(headers, config.api_token, no_auth=config.no_auth)


def check_head(
    config: EngineConfig,
    method: str,
    target: str,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    *,
    has_body: bool,
) -> HeadCheck:
    """Route, auth, body limit and media type of a request, from its head alone.

    ``headers`` are the request's header pairs (any case, str or bytes, as
    :class:`Request` takes them); ``has_body`` is whether a body follows (a
    ``Content-Length`` above 0, or ``Transfer-Encoding: chunked``): only then
    is the media type checked, as the engine checks it only on a body.
    """
    normalized = _normalize_headers(headers)
    try:
        found = route(method, target)
    except RemoteProtocolError as err:
        return HeadCheck(error=err, limit=config.max_body_bytes)
    limit = body_limit(config, found.endpoint)
    snapshot = found.endpoint is Endpoint.APPLY_STATE
    try:
        authenticate(config, found, normalized)
    except RemoteProtocolError as err:
        return HeadCheck(error=err, limit=limit, snapshot=snapshot)
    media_error = None
    if has_body and found.takes_body:
        try:
            check_content_type(normalized)
        except RemoteProtocolError as err:
            media_error = err
    return HeadCheck(media_error=media_error, limit=limit, snapshot=snapshot)
