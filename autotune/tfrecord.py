"""TFRecord files (the framing of TF Serving's warm-up files) read and written without TensorFlow.

Each record is: length (uint64, little-endian), masked CRC32C of the length (uint32), the data, masked
CRC32C of the data (uint32), as tensorflow/core/lib/io/record_writer.cc writes them. Uncompressed only:
TF Serving reads its warm-up file uncompressed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import google_crc32c

from autotune.errors import AutotuneError

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def masked_crc(data: bytes) -> int:
    """TensorFlow's masked CRC32C (crc32c.h Mask): rotate right by 15 bits, add a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record, framed."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + _FOOTER.pack(masked_crc(data))


def encode(records: Iterable[bytes]) -> bytes:
    """RECORDS as the bytes of a TFRecord file."""
    return b"".join(frame(data) for data in records)


def write_records(path: Path, records: Iterable[bytes]) -> int:
    """Write RECORDS to PATH as a TFRecord file; return how many."""
    records = list(records)
    path.write_bytes(encode(records))
    return len(records)


def is_tfrecord(head: bytes) -> bool:
    """Whether HEAD (a file's first 12 bytes or more) starts with a valid record header."""
    if len(head) < _HEADER.size:
        return False
    return masked_crc(head[:8]) == _HEADER.unpack_from(head)[1]


def read_records(data: bytes, source: str) -> Iterator[bytes]:
    """The records of a TFRecord file's bytes; a torn or corrupt record is a one-line error naming it."""
    pos, index = 0, 0
    while pos < len(data):
        index += 1
        if len(data) - pos < _HEADER.size:
            raise AutotuneError(f"{source}: record {index}: truncated header ({len(data) - pos} bytes)")
        length, crc = _HEADER.unpack_from(data, pos)
        if masked_crc(data[pos : pos + 8]) != crc:
            raise AutotuneError(f"{source}: record {index}: corrupt length (CRC mismatch); not a TFRecord file?")
        start = pos + _HEADER.size
        end = start + length
        if end + _FOOTER.size > len(data):
            raise AutotuneError(f"{source}: record {index}: truncated ({length} bytes announced)")
        record = data[start:end]
        if masked_crc(record) != _FOOTER.unpack_from(data, end)[0]:
            raise AutotuneError(f"{source}: record {index}: corrupt data (CRC mismatch)")
        yield record
        pos = end + _FOOTER.size
