"""OCPP-J: the WebSocket gateway, the RPC framing, and one translator per protocol version."""
