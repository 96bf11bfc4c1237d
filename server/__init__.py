"""Tidings server: the notification engine, its store and broker adapters, and the gRPC edge."""
