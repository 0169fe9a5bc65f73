"""Reading scalars back from a TensorBoard event file with tensorboardX's own protobufs (no tensorboard needed)."""

import struct

from tensorboardX.proto import event_pb2


def read_scalars(path):
    """{tag: [(step, value), ...]} of every scalar summary in the event file at ``path``."""
    out = {}
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
        pos += 12 + length + 4  # length, its crc, the record, its crc
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out
