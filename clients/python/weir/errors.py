"""Exceptions of the Weir client. Every one that comes from the server carries the protocol
error code: ``.code`` (an :class:`~weir.protocol.ErrorCode`, or an int for a code this client
does not know), ``.code_name`` and ``.code_number``."""

from __future__ import annotations

from .protocol import MISSED_UNKNOWN, Code, ErrorCode, code_name, error_code


class WeirError(Exception):
    """Base class of every exception this package raises."""


class CodedError(WeirError):
    """An error that carries a protocol error code."""

    def __init__(self, code: int, text: str = "") -> None:
        self.code: Code = error_code(code)
        self.text = text
        super().__init__(f"{self.code_name} ({self.code_number:#06x}){': ' + text if text else ''}")

    @property
    def code_name(self) -> str:
        return code_name(int(self.code))

    @property
    def code_number(self) -> int:
        return int(self.code)


class ServerError(CodedError):
    """The server sent ERROR (protocol.md §ERROR)."""

    def __init__(self, code: int, text: str = "", fatal: bool = True, ref_seq: int = 0) -> None:
        super().__init__(code, text)
        self.fatal = fatal
        self.ref_seq = ref_seq


class AuthRequired(ServerError):
    """ERROR(AUTH_REQUIRED): the listener does not allow anonymous sessions."""


class AuthFailed(ServerError):
    """ERROR(AUTH_FAILED): the credentials were not accepted."""


class NotAuthorized(ServerError):
    """ERROR(NOT_AUTHORIZED), not fatal: one PUBLISH, SUBSCRIBE or STATS was refused."""


class ConnectionClosed(CodedError):
    """The server sent GOODBYE (or the session ended) and the client cannot go on."""


class ProtocolViolation(CodedError):
    """The server sent bytes that do not decode (protocol.md §Framing); ``code`` says why."""


class SessionLost(CodedError):
    """A resume was answered LOST: the old session is gone and a new one has started.

    ``reason`` (= ``code``) is WELCOME.lost_reason, ``missed`` the count it carries (its
    meaning depends on the reason, protocol.md §LOST) or ``None`` when the server does not
    know it. ``old_session_id`` / ``new_session_id`` name both sessions; ``unreceipted`` is
    the number of publishes of the old session that no RECEIPT covered (their fate is
    unknown; the client publishes them again on the new session when
    ``republish_on_lost`` is set).
    """

    def __init__(self, reason: int, missed: int, old_session_id: int, new_session_id: int,
                 unreceipted: int = 0) -> None:
        self.missed: int | None = None if missed == MISSED_UNKNOWN else missed
        self.old_session_id = old_session_id
        self.new_session_id = new_session_id
        self.unreceipted = unreceipted
        super().__init__(reason, f"missed {'unknown' if self.missed is None else self.missed}")

    @property
    def reason(self) -> Code:
        return self.code


class Timeout(WeirError):
    """An operation (connect, stats, close) did not complete in time."""


def server_error(code: int, text: str, fatal: bool, ref_seq: int) -> ServerError:
    cls = {ErrorCode.AUTH_REQUIRED: AuthRequired, ErrorCode.AUTH_FAILED: AuthFailed,
           ErrorCode.NOT_AUTHORIZED: NotAuthorized}.get(error_code(code), ServerError)  # type: ignore[call-overload]
    return cls(code, text, fatal, ref_seq)
