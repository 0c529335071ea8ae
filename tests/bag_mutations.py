"""Seeded damage to a copy of a rosbag2, for the bag fuzz tests and benchmarks/bag_fuzz.py.

Each kind damages the copy once, the way storage and copies fail: bits flipped, a block
zeroed, the file cut short, a region duplicated or two regions swapped (a bad copy), a record
length field overwritten, a GroundTruth message's bytes flipped, metadata.yaml damaged.
"""

from __future__ import annotations

import random
import shutil
import struct
from pathlib import Path

KINDS = (
    'bitflip',
    'zero_block',
    'truncate',
    'duplicate',
    'reorder',
    'length_field',
    'ground_truth_bytes',
    'metadata',
)


def storage_file(bag: Path) -> Path:
    return next(f for f in sorted(bag.iterdir()) if f.suffix in ('.mcap', '.db3'))


def mutate(original: Path, copy: Path, kind: str, seed: int) -> str:
    """Copy the bag folder `original` to `copy` and damage it with `kind`; returns what was
    done (for the outcome table)."""
    shutil.copytree(original, copy)
    rng = random.Random(seed)
    if kind == 'metadata':
        return _metadata(copy / 'metadata.yaml', rng)
    path = storage_file(copy)
    data = bytearray(path.read_bytes())
    what = globals()[f'_{kind}'](data, rng)
    path.write_bytes(bytes(data))
    return what


def _body(data: bytearray, rng: random.Random, length: int = 1) -> int:
    """A position in the file past its first 64 bytes (magic, header)."""
    return rng.randrange(64, max(65, len(data) - length))


def _bitflip(data: bytearray, rng: random.Random) -> str:
    n = rng.choice([1, 8, 50])
    for _ in range(n):
        data[_body(data, rng)] ^= 1 << rng.randrange(8)
    return f'{n} bits flipped'


def _zero_block(data: bytearray, rng: random.Random) -> str:
    size = rng.choice([512, 4096, 65536])
    at = _body(data, rng, size)
    data[at : at + size] = bytes(len(data[at : at + size]))
    return f'{size} bytes zeroed at {at}'


def _truncate(data: bytearray, rng: random.Random) -> str:
    keep = rng.uniform(0.05, 0.99)
    del data[int(len(data) * keep) :]
    return f'cut at {keep:.0%}'


def _duplicate(data: bytearray, rng: random.Random) -> str:
    size = rng.choice([100, 4096, 100_000])
    at, to = _body(data, rng, size), _body(data, rng)
    data[to:to] = data[at : at + size]
    return f'{size} bytes from {at} repeated at {to}'


def _reorder(data: bytearray, rng: random.Random) -> str:
    size = rng.choice([4096, 100_000])
    a, b = sorted(_body(data, rng, size) for _ in range(2))
    b = max(b, a + size)
    if b + size > len(data):
        return _truncate(data, rng)
    first, second = bytes(data[a : a + size]), bytes(data[b : b + size])
    data[a : a + size], data[b : b + size] = second, first
    return f'{size} bytes at {a} and {b} swapped'


def _length_field(data: bytearray, rng: random.Random) -> str:
    """An MCAP record's uint64 length (a top-level record or one inside a chunk), or for
    another storage the bytes of a length-like spot: set to a huge or a small value."""
    starts = _mcap_records(data) if data[:5] == b'\x89MCAP' else []
    at = rng.choice(starts) + 1 if starts else _body(data, rng, 8)
    value = rng.choice([2**63 + rng.randrange(2**40), rng.randrange(1, 64), 7_800_000_000])
    data[at : at + 8] = struct.pack('<Q', value)
    return f'length at byte {at} set to {value}'


def _mcap_records(data: bytearray) -> list[int]:
    """Offsets of top-level records and of the records inside uncompressed chunks."""
    found, at = [], 8
    while at + 9 <= len(data):
        opcode, length = data[at], struct.unpack_from('<Q', data, at + 1)[0]
        found.append(at)
        if opcode == 0x06:  # chunk: records start after its header
            (n,) = struct.unpack_from('<I', data, at + 9 + 28)
            inner = at + 9 + 32 + n + 8
            end = at + 9 + length
            if n == 0:  # uncompressed
                while inner + 9 <= end:
                    found.append(inner)
                    inner += 9 + struct.unpack_from('<Q', data, inner + 1)[0]
        if opcode == 0x02:
            break
        at += 9 + length
    return found


def _ground_truth_bytes(data: bytearray, rng: random.Random) -> str:
    """Flip the bytes around a GroundTruth message's label string (its CDR lengths and text)."""
    spots = [i for i in range(len(data)) if data.startswith(b'/ground', i)] or [0]
    label = data.find(b'mel', rng.choice(spots)) if spots != [0] else -1
    at = label - 8 if label > 8 else _body(data, rng, 16)
    for i in range(at, min(at + 12, len(data))):
        data[i] ^= 0xFF
    return f'12 bytes flipped at {at} (a GroundTruth message)'


def _metadata(path: Path, rng: random.Random) -> str:
    text = path.read_text()
    how = rng.choice(['cut', 'garble', 'counts', 'delete'])
    if how == 'cut':
        path.write_text(text[: rng.randrange(len(text))])
    elif how == 'garble':
        chars = list(text)
        for _ in range(20):
            chars[rng.randrange(len(chars))] = rng.choice(':[]{}-\n"\t')
        path.write_text(''.join(chars))
    elif how == 'counts':
        path.write_text(text.replace('message_count: ', 'message_count: 9'))
    else:
        path.unlink()
    return f'metadata.yaml: {how}'
