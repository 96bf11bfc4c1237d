"""The gRPC edge: tidings.v1 messages to engine calls, engine errors to status codes."""
