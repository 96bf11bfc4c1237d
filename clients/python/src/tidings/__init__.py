"""Tidings for Python: ``tidings.v1`` (generated gRPC stubs) and ``tidings.client`` (the SDK)."""
