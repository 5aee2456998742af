"""Generated gRPC code (``make proto``) and the converters between protobuf messages and dataclasses.

Protobuf types stay here and in the gRPC adapters; the rest of weir speaks the dataclasses of ``convert``.
"""

GRPC_OPTIONS = [
    # job graphs (from_collection of millions of records) exceed gRPC's default 4 MB limit
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
