"""The gRPC server registers its handlers by name: the table must match the protos."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.descriptor import ServiceDescriptor
from tidings.v1 import admin_pb2, relay_pb2, stream_pb2

from server.rpc.server import method_handlers


class AnyServicer:
    """Has every method a servicer could have."""

    def __getattr__(self, name: str) -> Any:
        async def method(*args: Any) -> None:
            raise AssertionError(name)

        return method


def test_every_rpc_of_every_service_has_a_handler_of_its_kind() -> None:
    stub = cast(Any, AnyServicer())
    table = method_handlers(stub, stub, stub)
    services: list[ServiceDescriptor] = [
        *stream_pb2.DESCRIPTOR.services_by_name.values(),
        *admin_pb2.DESCRIPTOR.services_by_name.values(),
        *relay_pb2.DESCRIPTOR.services_by_name.values(),
    ]
    assert set(table) == {s.full_name for s in services}
    for service in services:
        methods = table[service.full_name]
        assert set(methods) == {m.name for m in service.methods}, service.full_name
        for method in service.methods:
            handler = methods[method.name]
            assert handler.request_streaming == method.client_streaming, method.full_name
            assert handler.response_streaming == method.server_streaming, method.full_name
