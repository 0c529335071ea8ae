"""Read an MCAP file record by record, verifying what the file lets us verify, and keep reading
past what is damaged where the framing allows (a recording whose power failed, a copy
interrupted half way, flipped bits, zeroed blocks).

rosbags (like `ros2 bag play`) needs the file's summary at the end and refuses a file without
it; where it opens a file it replays a damaged chunk whose CRC is 0 ("not computed") as if it
were intact. This reader scans forward (records are self-delimiting: opcode, uint64 length,
content) and:
- bounds every length by what is left of the file: a record that claims more ends the scan
  there ('record at byte N cut short'), as does a reserved opcode (0x00: zeroed bytes);
- parses each chunk completely before yielding any of its messages, and checks its size and
  CRC (when the file has one): a chunk that fails is skipped whole, the scan goes on with the
  next record, and the log times of its messages are read from the message indexes that
  follow it (`lost`);
- checks the data section's CRC (DataEnd) and the summary's (Footer) where they are set;
- takes schemas and channels from the summary when its CRC holds (or is not set), so the
  messages after a lost first chunk (rosbags writes them there) are still known.
`add_crcs()` gives a file written without CRCs (rosbags' writer leaves them 0) every chunk's,
the data section's and the summary's CRC, as libmcap's writer does. Format:
https://mcap.dev/spec
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAGIC = b'\x89MCAP0\r\n'
HEADER, FOOTER, SCHEMA, CHANNEL, MESSAGE, CHUNK, MESSAGE_INDEX = (
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,
)
STATISTICS, DATA_END = 0x0B, 0x0F
MAX_CHUNK_BYTES = 1 << 30  # a chunk that claims to hold more is damage, not a gigabyte to decode
FOOTER_BYTES = 9 + 20 + len(MAGIC)  # footer record + closing magic


@dataclass(frozen=True)
class SalvagedMessage:
    topic: str
    msgtype: str  # the schema name, e.g. sensor_msgs/msg/Image
    log_time_ns: int
    data: bytes  # CDR bytes as recorded


@dataclass
class Salvage:
    """Filled while messages() is consumed: what was verified, what was lost, and where (if
    anywhere) reading stopped early."""

    path: Path
    complete: bool = False  # reached the end of the data section
    damage: str = ''  # why reading stopped early
    bad_chunks: list[str] = field(default_factory=list)  # 'chunk at byte N (...): why'
    lost: dict[str, list[int]] = field(default_factory=dict)  # topic -> log times in bad chunks
    crc_errors: list[str] = field(default_factory=list)  # data section / summary CRC failures
    chunks: int = 0
    chunks_with_crc: int = 0
    schemas: dict[int, str] = field(default_factory=dict)
    channels: dict[int, tuple[str, int]] = field(default_factory=dict)  # id -> (topic, schema)
    counts: dict[str, int] = field(default_factory=dict)  # topic -> messages (summary statistics)
    _lost_channel: dict[int, list[int]] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Every way the file is damaged, in reading order ([] for an intact file)."""
        chunks = self.bad_chunks
        if len(chunks) > 3:
            chunks = chunks[:2] + [f'{len(chunks) - 2} more of its {self.chunks} chunks fail']
        return chunks + self.crc_errors + ([self.damage] if self.damage else [])

    def messages(self) -> Iterator[SalvagedMessage]:
        with self.path.open('rb') as bio:
            size = bio.seek(0, io.SEEK_END)
            bio.seek(0)
            if bio.read(8) != MAGIC:
                self.damage = 'not an MCAP file (magic)'
                return
            self._summary(bio, size)
            bio.seek(8)
            try:
                yield from self._top_level(bio, size)
            except _Damaged as exc:
                self.damage = str(exc)
            if not self.complete and not self.damage:
                self.damage = 'file ends before its data section does'
        for cid, times in self._lost_channel.items():
            topic = self.channels.get(cid, (f'channel {cid}', 0))[0]
            self.lost.setdefault(topic, []).extend(times)

    def _top_level(self, bio: BinaryIO, size: int) -> Iterator[SalvagedMessage]:
        crc = zlib.crc32(MAGIC)
        failed_chunk = False  # message indexes that follow a failed chunk name its messages
        while True:
            start = bio.tell()
            opcode, content, raw_head = _read_record(bio, size, start)
            if opcode is None:
                return
            if opcode == DATA_END:
                stored = struct.unpack_from('<I', content)[0] if len(content) >= 4 else 0
                if stored and stored != crc and not self.bad_chunks:  # else: said already
                    self.crc_errors.append('the data section fails its CRC')
                self.complete = True
                return
            if opcode == FOOTER:
                self.complete = True
                return
            crc = zlib.crc32(content, zlib.crc32(raw_head, crc))
            if opcode == CHUNK:
                self.chunks += 1
                try:
                    parsed = self._chunk(content)
                except _Damaged as exc:
                    self.bad_chunks.append(f'chunk at byte {start}{_span(content)}: {exc}')
                    failed_chunk = True
                    continue
                failed_chunk = False
                yield from parsed
            elif opcode == MESSAGE_INDEX:
                if failed_chunk:
                    self._index_lost(content)
            else:
                failed_chunk = False
                try:
                    message = self._record(opcode, content)
                except (struct.error, UnicodeDecodeError) as exc:
                    raise _Damaged(
                        f'record at byte {start} (opcode {opcode:#04x}): {exc}'
                    ) from None
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
            self._lost_channel.setdefault(cid, []).append(log_time)
        return None

    def _chunk(self, content: bytes) -> list[SalvagedMessage]:
        """The chunk's messages, or _Damaged: a chunk is used whole or not at all."""
        crc, data = _chunk_records(content)
        if crc:
            self.chunks_with_crc += 1
            if zlib.crc32(data) != crc:
                raise _Damaged('fails its CRC')
        inner, parsed = io.BytesIO(data), []
        saved = dict(self.schemas), dict(self.channels)
        try:
            while inner.tell() < len(data):
                start = inner.tell()
                opcode, record, _ = _read_record(inner, len(data), start)
                if opcode in (None, DATA_END, FOOTER, CHUNK):
                    raise _Damaged(f'record at byte {start} of the chunk is not a chunk record')
                message = self._record(opcode, record)
                if message is not None:
                    parsed.append(message)
        except (_Damaged, struct.error, UnicodeDecodeError) as exc:
            self.schemas, self.channels = saved
            raise _Damaged(f'unreadable records ({exc})') from None
        return parsed

    def _index_lost(self, content: bytes) -> None:
        """Log times a message index lists for its channel (the messages of a failed chunk)."""
        try:
            cid, length = struct.unpack_from('<HI', content)
            pairs = min(length, len(content) - 6) // 16
            times = [struct.unpack_from('<Q', content, 6 + 16 * i)[0] for i in range(pairs)]
        except struct.error:
            return
        self._lost_channel.setdefault(cid, []).extend(times)

    def _summary(self, bio: BinaryIO, size: int) -> None:
        """Schemas, channels and message counts of the summary section, where the footer points
        to one whose CRC holds (or is 0); a damaged summary is noted and otherwise ignored."""
        if size < 8 + FOOTER_BYTES:
            return
        bio.seek(size - FOOTER_BYTES)
        tail = bio.read(FOOTER_BYTES)
        if tail[0] != FOOTER or tail[-8:] != MAGIC:
            return
        summary_start, _, summary_crc = struct.unpack_from('<QQI', tail, 9)
        if not 8 < summary_start < size - FOOTER_BYTES:
            return
        bio.seek(summary_start)
        section = bio.read(size - FOOTER_BYTES - summary_start)
        if summary_crc and _summary_crc(section, tail) != summary_crc:
            self.crc_errors.append('the summary fails its CRC (not used)')
            return
        inner, found, stats = io.BytesIO(section), Salvage(self.path), None
        try:
            while inner.tell() < len(section):
                opcode, content, _ = _read_record(inner, len(section), inner.tell())
                if opcode in (SCHEMA, CHANNEL):
                    found._record(opcode, content)
                elif opcode == STATISTICS:
                    stats = content
        except (_Damaged, struct.error, UnicodeDecodeError):
            return
        self.schemas, self.channels = found.schemas, found.channels
        if stats is not None:
            self.counts = _statistics_counts(stats, self.channels)


class _Damaged(Exception):
    pass


def _read_record(bio: BinaryIO, size: int, start: int) -> tuple[int | None, bytes, bytes]:
    """(opcode, content, the 9 header bytes) of the record at `start`; opcode None at the end of
    the data. _Damaged when the record is cut short, claims more bytes than are left, or has the
    reserved opcode 0 (zeroed bytes)."""
    head = bio.read(9)
    if not head:
        return None, b'', b''
    left = size - start
    length = struct.unpack('<Q', head[1:])[0] if len(head) == 9 else 0
    if len(head) < 9 or length > left - 9:
        raise _Damaged(f'record at byte {start} cut short: {left} of {9 + length} bytes')
    if head[0] == 0:
        raise _Damaged(f'record at byte {start} has the reserved opcode 0 (zeroed bytes?)')
    return head[0], bio.read(length), head


def _chunk_records(content: bytes) -> tuple[int, bytes]:
    """(the CRC stored in a chunk record, its records decompressed and size-checked);
    _Damaged when the header does not fit the record or the sizes disagree."""
    try:
        uncompressed_size, crc = struct.unpack_from('<QI', content, 16)
        compression, offset = _string(content, 28)
        (size,) = struct.unpack_from('<Q', content, offset)
    except (struct.error, UnicodeDecodeError) as exc:
        raise _Damaged(f'unreadable chunk header ({exc})') from None
    if size > len(content) - offset - 8 or uncompressed_size > MAX_CHUNK_BYTES:
        raise _Damaged(f'sizes {size}/{uncompressed_size} do not fit the record')
    data = _decompress(content[offset + 8 : offset + 8 + size], compression)
    if len(data) != uncompressed_size:
        raise _Damaged(f'{len(data)} bytes, the header says {uncompressed_size}')
    return crc, data


def _summary_crc(section: bytes, tail: bytes) -> int:
    """The Footer's summary CRC: the summary section, then the footer up to that field."""
    return zlib.crc32(tail[:-12], zlib.crc32(section))


def _span(content: bytes) -> str:
    try:
        first, last = struct.unpack_from('<QQ', content)
    except struct.error:
        return ''
    return f' (log times {first / 1e9:.3f}-{last / 1e9:.3f} s)'


def _string(buf: bytes, offset: int) -> tuple[str, int]:
    (n,) = struct.unpack_from('<I', buf, offset)
    if offset + 4 + n > len(buf):
        raise struct.error(f'string of {n} bytes at {offset} overruns its record')
    return buf[offset + 4 : offset + 4 + n].decode(), offset + 4 + n


def _statistics_counts(content: bytes, channels: dict[int, tuple[str, int]]) -> dict[str, int]:
    """Messages per topic from a Statistics record (its channel_message_counts map at 42)."""
    (length,) = struct.unpack_from('<I', content, 42)
    counts = {}
    for i in range(min(length, len(content) - 46) // 10):
        cid, count = struct.unpack_from('<HQ', content, 46 + 10 * i)
        if cid in channels:
            counts[channels[cid][0]] = count
    return counts


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
        raise _Damaged(f'does not decompress ({compression}: {exc})') from exc
    raise _Damaged(f'compression {compression!r} unknown')


def add_crcs(path: str | Path) -> int:
    """Write every chunk's CRC, the data section's (DataEnd) and the summary's (Footer) into an
    intact MCAP file that left them 0; returns the number of chunks. In place: the CRC fields
    have fixed offsets, so nothing moves."""
    path = Path(path)
    with path.open('r+b') as bio:
        size = bio.seek(0, io.SEEK_END)
        bio.seek(8)
        crc, chunks = zlib.crc32(MAGIC), 0
        while True:
            start = bio.tell()
            opcode, content, head = _read_record(bio, size, start)
            if opcode in (None, FOOTER):
                raise ValueError(f'{path}: no DataEnd record')
            if opcode == DATA_END:
                bio.seek(start + 9)
                bio.write(struct.pack('<I', crc))
                break
            if opcode == CHUNK:
                data = _chunk_records(content)[1]
                content = content[:24] + struct.pack('<I', zlib.crc32(data)) + content[28:]
                bio.seek(start + 9 + 24)
                bio.write(content[24:28])
                bio.seek(start + 9 + len(content))
                chunks += 1
            crc = zlib.crc32(content, zlib.crc32(head, crc))
        bio.seek(size - FOOTER_BYTES)
        tail = bio.read(FOOTER_BYTES)
        (summary_start,) = struct.unpack_from('<Q', tail, 9)
        if summary_start:
            bio.seek(summary_start)
            section = bio.read(size - FOOTER_BYTES - summary_start)
            bio.seek(size - FOOTER_BYTES + 9 + 16)
            bio.write(struct.pack('<I', _summary_crc(section, tail)))
    return chunks
