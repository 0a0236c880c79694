"""Pushes a Loki protobuf request encoded independently of Tripod: the message classes are
built here from the layout in proto/loki/push.proto with the protobuf package, the body is
snappy-compressed with cramjam, and sent with urllib.

usage: loki_push.py URL START_NS
Prints the HTTP status; exits 0 on 204.
"""
import sys
import urllib.error
import urllib.request

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2


def build_classes():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="push.proto", package="logproto", syntax="proto3", dependency=["google/protobuf/timestamp.proto"]
    )
    Field = descriptor_pb2.FieldDescriptorProto

    def message(name, fields):
        proto = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = proto.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    optional, repeated = Field.LABEL_OPTIONAL, Field.LABEL_REPEATED
    message("PushRequest", [("streams", 1, Field.TYPE_MESSAGE, repeated, ".logproto.StreamAdapter")])
    message("StreamAdapter", [
        ("labels", 1, Field.TYPE_STRING, optional, None),
        ("entries", 2, Field.TYPE_MESSAGE, repeated, ".logproto.EntryAdapter"),
        ("hash", 3, Field.TYPE_UINT64, optional, None),
    ])
    message("EntryAdapter", [
        ("timestamp", 1, Field.TYPE_MESSAGE, optional, ".google.protobuf.Timestamp"),
        ("line", 2, Field.TYPE_STRING, optional, None),
        ("structuredMetadata", 3, Field.TYPE_MESSAGE, repeated, ".logproto.LabelPairAdapter"),
    ])
    message("LabelPairAdapter", [
        ("name", 1, Field.TYPE_STRING, optional, None),
        ("value", 2, Field.TYPE_STRING, optional, None),
    ])
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


def main():
    url, start_ns = sys.argv[1], int(sys.argv[2])
    PushRequest = build_classes()
    request = PushRequest()
    stream = request.streams.add(labels='{app="payments", note="say \\"hi\\"\\n"}', hash=12345)
    for i in range(3):
        entry = stream.entries.add(line=f"payment {i} settled \u2713")
        entry.timestamp.seconds = (start_ns + i) // 1_000_000_000
        entry.timestamp.nanos = (start_ns + i) % 1_000_000_000
        if i == 1:
            entry.structuredMetadata.add(name="trace_id", value="0af7651916cd43dd8448eb211c80319c")
    other = request.streams.add(labels='{app="ledger"}')
    entry = other.entries.add(line="ledger closed")
    entry.timestamp.seconds = start_ns // 1_000_000_000
    entry.timestamp.nanos = start_ns % 1_000_000_000
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    post = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"}, method="POST")
    try:
        with urllib.request.urlopen(post) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
        print(error.read().decode(), file=sys.stderr)
    print(status)
    sys.exit(0 if status == 204 else 1)


if __name__ == "__main__":
    main()
