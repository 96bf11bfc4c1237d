"""The browser bridge: WebSocket JSON and REST, translated onto the gRPC engine."""
