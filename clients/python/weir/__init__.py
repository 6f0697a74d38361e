"""asyncio client for the Weir message-queue server (wire protocol version 1, protocol.md).

    import asyncio, weir

    async def main():
        client = await weir.Client.connect("127.0.0.1", 7400, name="demo")
        sub = await client.subscribe("db", events=["update"])
        await client.publish("db", "update", b"hi")
        async for d in sub:
            print(d.seq, d.event, d.payload)
            break
        await client.close()
"""

from . import protocol
from .client import (Client, Delivery, Event, ReconnectFailed, Resumed, Subscription,
                     SubscriptionEnded)
from .errors import (AuthFailed, AuthRequired, CodedError, ConnectionClosed, NotAuthorized,
                     ProtocolViolation, ServerError, SessionLost, Timeout, WeirError)
from .protocol import DecodeError, Decoder, EncodeError, ErrorCode
from .ws import WebSocketError

__all__ = [
    "Client", "Delivery", "Event", "ReconnectFailed", "Resumed", "Subscription",
    "SubscriptionEnded", "AuthFailed", "AuthRequired", "CodedError", "ConnectionClosed",
    "NotAuthorized", "ProtocolViolation", "ServerError", "SessionLost", "Timeout", "WeirError",
    "DecodeError", "Decoder", "EncodeError", "ErrorCode", "WebSocketError", "protocol",
]
__version__ = "0.1.0"
