"""The gRPC edge: translates tidings.v1 messages to engine calls and engine errors to status codes."""
