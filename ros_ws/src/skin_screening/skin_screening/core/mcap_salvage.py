"""Read what is readable of a damaged MCAP file: records in file order, up to the first one that
is cut short or corrupt (a recording whose power failed, a copy interrupted half way).

rosbags (like `ros2 bag play`) needs the file's summary at the end and refuses such a file. The
records themselves are self-delimiting (opcode, uint64 length, content), so a forward scan
recovers every complete chunk before the damage. Format: https://mcap.dev/spec
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAGIC = b'\x89MCAP0\r\n'
HEADER, FOOTER, SCHEMA, CHANNEL, MESSAGE, CHUNK, DATA_END = (
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x0F,
)


@dataclass(frozen=True)
class SalvagedMessage:
    topic: str
    msgtype: str  # the schema name, e.g. sensor_msgs/msg/Image
    log_time_ns: int
    data: bytes  # CDR bytes as recorded


@dataclass
class Salvage:
    """Filled while messages() is consumed: where the readable part ended and why."""

    path: Path
    complete: bool = False  # reached the end of the data section intact
    damage: str = ''  # why reading stopped early
    schemas: dict[int, str] = field(default_factory=dict)
    channels: dict[int, tuple[str, int]] = field(default_factory=dict)  # id -> (topic, schema)

    def messages(self) -> Iterator[SalvagedMessage]:
        with self.path.open('rb') as bio:
            if bio.read(8) != MAGIC:
                self.damage = 'not an MCAP file (magic)'
                return
            try:
                yield from self._records(bio, in_chunk=False)
            except _Damaged as exc:
                self.damage = str(exc)
            if not self.complete and not self.damage:
                self.damage = 'file ends before its data section does'

    def _records(self, bio: BinaryIO, in_chunk: bool) -> Iterator[SalvagedMessage]:
        while True:
            start = bio.tell()
            head = bio.read(9)
            if not head:
                return
            length = struct.unpack('<Q', head[1:])[0] if len(head) == 9 else 0
            content = bio.read(length)
            if len(head) < 9 or len(content) < length:
                have = len(head) + len(content)
                raise _Damaged(f'record at byte {start} cut short: {have} of {9 + length} bytes')
            opcode = head[0]
            if opcode in (DATA_END, FOOTER) and not in_chunk:
                self.complete = True
                return
            if opcode == CHUNK:
                yield from self._chunk(content)
            else:
                message = self._record(opcode, content)
                if message is not None:
                    yield message

    def _record(self, opcode: int, content: bytes) -> SalvagedMessage | None:
        if opcode == SCHEMA:
            (sid,) = struct.unpack_from('<H', content)
            self.schemas[sid] = _string(content, 2)[0]
        elif opcode == CHANNEL:
            cid, sid = struct.unpack_from('<HH', content)
            self.channels[cid] = (_string(content, 4)[0], sid)
        elif opcode == MESSAGE:
            cid, _seq, log_time, _pub = struct.unpack_from('<HIQQ', content)
            if cid in self.channels:
                topic, sid = self.channels[cid]
                return SalvagedMessage(topic, self.schemas.get(sid, ''), log_time, content[22:])
        return None

    def _chunk(self, content: bytes) -> Iterator[SalvagedMessage]:
        import io
        import zlib

        uncompressed_size, crc = struct.unpack_from('<QI', content, 16)
        compression, offset = _string(content, 28)
        (size,) = struct.unpack_from('<Q', content, offset)
        data = _decompress(content[offset + 8 : offset + 8 + size], compression)
        if len(data) != uncompressed_size or (crc and zlib.crc32(data) != crc):
            raise _Damaged('a chunk fails its size or CRC check')
        yield from self._records(io.BytesIO(data), in_chunk=True)


class _Damaged(Exception):
    pass


def _string(buf: bytes, offset: int) -> tuple[str, int]:
    (n,) = struct.unpack_from('<I', buf, offset)
    return buf[offset + 4 : offset + 4 + n].decode(), offset + 4 + n


def _decompress(data: bytes, compression: str) -> bytes:
    try:
        if compression == '':
            return data
        if compression == 'zstd':
            try:
                from compression import zstd
            except ImportError:
                from backports import zstd
            return zstd.decompress(data)
        if compression == 'lz4':
            import lz4.frame

            return lz4.frame.decompress(data)
    except Exception as exc:  # noqa: BLE001 - any decoder error means a damaged chunk
        raise _Damaged(f'a {compression} chunk does not decompress: {exc}') from exc
    raise _Damaged(f'chunk compression {compression!r} unknown')
