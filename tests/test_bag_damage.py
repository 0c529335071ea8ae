"""Damaged bags (issue 34): never a traceback, never a damaged frame replayed as intact.

The six cases a user met, each on a real-photograph dwell bag, plus a seeded fuzz of every
bag reader (inspect_bag, the player's frame reader, ground_truth) on both storages."""

import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from skin_screening.core.bags import (
    BagError,
    LabelledFrame,
    frames_of,
    ground_truth,
    inspect_bag,
    write_bag,
)
from skin_screening.core.dwell import dwell_frames
from skin_screening.core.mcap_salvage import CHUNK, Salvage

from tests.bag_mutations import KINDS, mutate, storage_file
from tests.conftest import REPO


@pytest.fixture(scope='module')
def dwell_bags(sample_frames, tmp_path_factory):
    """A 30 Hz dwell bag of 4 real photographs x 6 frames per storage, as the project writes it
    (mcap with CRCs), and an mcap without CRCs (rosbags' own writer, as before)."""
    rgbs, y = sample_frames
    images = [
        LabelledFrame(rgbs[i], int(y[i]), 'mel' if y[i] else 'nv', f'i{i}', f'l{i}')
        for i in range(4)
    ]
    root = tmp_path_factory.mktemp('dwell')
    bags = {}
    for storage in ('mcap', 'sqlite3'):
        bags[storage] = root / storage
        write_bag(bags[storage], dwell_frames(images, 6), rate_hz=30.0, storage=storage)
    return bags


def originals(bag):
    return {f.stamp_ns: f.raw for f in frames_of(inspect_bag(bag))}


def chunk_offsets(path):
    """Byte offsets of the top-level chunk records of an MCAP file."""
    data, at, found = path.read_bytes(), 8, []
    while at + 9 <= len(data) and data[at] != 0x0F:
        if data[at] == CHUNK:
            found.append(at)
        at += 9 + struct.unpack_from('<Q', data, at + 1)[0]
    return found


def test_the_bags_the_project_writes_carry_chunk_data_and_summary_crcs(dwell_bags):
    from mcap.reader import make_reader
    from mcap.stream_reader import StreamReader

    path = storage_file(dwell_bags['mcap'])
    salvage = Salvage(path)
    assert len(list(salvage.messages())) == 48 and salvage.problems() == []
    assert salvage.chunks >= 3 and salvage.chunks_with_crc == salvage.chunks
    checked = list(StreamReader(path.open('rb'), validate_crcs=True).records)  # mcap's own
    assert next(r for r in checked if type(r).__name__ == 'DataEnd').data_section_crc != 0
    chunks = [r for r in StreamReader(path.open('rb'), emit_chunks=True).records]
    assert sum(type(r).__name__ == 'Chunk' and r.uncompressed_crc != 0 for r in chunks) >= 3
    footer = path.read_bytes()[-37:]
    assert struct.unpack_from('<I', footer, 9 + 16)[0] != 0  # summary CRC
    assert sum(1 for _ in make_reader(path.open('rb')).iter_messages()) == 48


@pytest.mark.parametrize('damage', ['flip 50 bytes', 'zero 64 kB early', 'zero 64 kB late'])
def test_damage_in_the_body_is_found_and_its_frames_named_never_replayed(
    dwell_bags, tmp_path, damage
):
    """Issue 34's first three rows: replayed and scored as intact before; now the chunks that
    fail their CRC are skipped, their frames named as lost, every other frame byte-identical."""
    bag = tmp_path / 'bag'
    intact = originals(dwell_bags['mcap'])
    path = storage_file(shutil.copytree(dwell_bags['mcap'], bag))
    data = bytearray(path.read_bytes())
    chunks = chunk_offsets(path)
    at = {'flip 50 bytes': chunks[1] + 5000, 'zero 64 kB early': chunks[0] + 2000}.get(
        damage, chunks[1] + 500_000
    )
    if damage.startswith('flip'):
        data[at : at + 50] = bytes(b ^ 0xFF for b in data[at : at + 50])
    else:
        data[at : at + 65536] = bytes(len(data[at : at + 65536]))
    path.write_bytes(bytes(data))
    info = inspect_bag(bag)
    assert 'fails its CRC' in info.damage or 'cut short' in info.damage, info.damage
    assert info.expected == 24 and info.topic.count < 24
    assert len(info.lost) == 24 - info.topic.count  # each lost frame named by its log time
    assert all(name.startswith('log time 17000000') for name in info.lost)
    read = {f.stamp_ns: f.raw for f in frames_of(info)}
    assert len(read) == info.topic.count and all(intact[s] == raw for s, raw in read.items())


def test_a_huge_length_read_from_image_bytes_ends_the_salvage_there(dwell_bags, tmp_path):
    """Issue 34's MemoryError (a length of about 7.8e18 from a duplicated region): every length
    is bounded by what is left of the file."""
    path = storage_file(shutil.copytree(dwell_bags['mcap'], tmp_path / 'bag'))
    data = bytearray(path.read_bytes())
    second = chunk_offsets(path)[1]
    data[second + 1 : second + 9] = struct.pack('<Q', 7_800_000_000_000_000_000)
    path.write_bytes(bytes(data))
    info = inspect_bag(path.parent)
    assert f'record at byte {second} cut short' in info.damage
    assert 0 < info.topic.count < 24 and info.expected == 24


def test_a_ground_truth_message_that_does_not_deserialize_is_counted_not_raised(
    dwell_bags, tmp_path
):
    """Issue 34's SerdeError out of ground_truth(): in sqlite3 (no checksum) the message reads,
    does not deserialize, and is left out with the count said."""
    bag = shutil.copytree(dwell_bags['sqlite3'], tmp_path / 'bag')
    break_a_ground_truth_message(storage_file(bag))
    problems = []
    truth = ground_truth(bag, problems)
    assert len(truth) == 23
    assert problems == ['1 ground-truth messages do not deserialize (not scored)']


def break_a_ground_truth_message(db):
    import sqlite3

    with sqlite3.connect(db) as con:
        (topic,) = con.execute("SELECT id FROM topics WHERE name = '/ground_truth'").fetchone()
        rowid, blob = con.execute(
            'SELECT id, data FROM messages WHERE topic_id = ? LIMIT 1', (topic,)
        ).fetchone()
        con.execute('UPDATE messages SET data = ? WHERE id = ?', (blob[:30], rowid))


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_fuzzed_bags_are_refused_or_read_never_an_exception(dwell_bags, tmp_path, storage):
    """Every damage kind, 3 seeds each: inspect_bag refuses the bag (BagError) or reads it; an
    mcap either reads all frames exactly or names the damage, and never yields a frame that
    differs from the original; ground_truth never raises anything but BagError."""
    intact = originals(dwell_bags[storage])
    outcomes = []
    for i, kind in enumerate(k for k in KINDS for _ in range(3)):
        bag = tmp_path / f'{kind}{i}'
        what = mutate(dwell_bags[storage], bag, kind, 1000 + i)
        try:
            info = inspect_bag(bag)
            read = {f.stamp_ns: f.raw for f in frames_of(info)}
            ground_truth(bag, [])
        except BagError:
            outcomes.append('refused')
            continue
        assert len(read) == info.topic.count, what
        if storage == 'mcap':
            assert all(intact.get(s) == raw for s, raw in read.items()), what
            assert info.damage or read == intact, what
        outcomes.append('damaged' if info.damage else 'intact')
    assert outcomes.count('refused') < len(outcomes)  # the harness exercises reading, too


def run_py(bag, tmp_path, ros_env):
    return subprocess.run(
        [sys.executable, str(REPO / 'run.py'), '--bag', str(bag), '--precisions', 'int8']
        + ['--out', str(tmp_path / 'out')],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.ros
def test_run_py_on_a_dwell_bag_with_a_chunk_failing_its_crc(dwell_bags, tmp_path, ros_env):
    """Issue 34's flipped bytes: one warning naming the chunk and the frames lost, the table of
    what could be scored, F1 no-ROS computed on the same frames and equal to F1 (it was nan on
    every dwell bag), exit code 3, no traceback."""
    path = storage_file(shutil.copytree(dwell_bags['mcap'], tmp_path / 'bag'))
    data = bytearray(path.read_bytes())
    at = chunk_offsets(path)[1] + 3000
    data[at : at + 50] = bytes(b ^ 0xFF for b in data[at : at + 50])
    path.write_bytes(bytes(data))
    result = run_py(path.parent, tmp_path, ros_env)
    assert result.returncode == 3, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr + result.stdout
    assert 'warning: bag damaged (chunk at byte' in result.stderr
    assert 'fails its CRC' in result.stderr and 'frames readable; lost: log time' in result.stderr
    row = only_row(tmp_path)
    assert row['n_published'] == row['n_answered'] == inspect_bag(path.parent).topic.count < 24
    assert np.isfinite(row['direct_f1']) and row['direct_f1'] == pytest.approx(row['f1'])
    assert 'int8' in result.stdout.split('F1 no-ROS', 1)[1]  # the table was printed


@pytest.mark.ros
def test_run_py_with_a_ground_truth_message_that_does_not_deserialize(
    dwell_bags, tmp_path, ros_env
):
    """Issue 34's traceback after all replays (SerdeError from ground_truth()): now a warning,
    every frame replayed, the 23 labelled frames scored, exit code 3 naming the loss."""
    bag = shutil.copytree(dwell_bags['sqlite3'], tmp_path / 'bag')
    break_a_ground_truth_message(storage_file(bag))
    result = run_py(bag, tmp_path, ros_env)
    assert result.returncode == 3, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr + result.stdout
    assert 'warning: 1 ground-truth messages do not deserialize (not scored)' in result.stderr
    row = only_row(tmp_path)
    assert (row['n_published'], row['answered'], row['frames']) == (24, 23, 23)
    assert row['direct_f1'] == pytest.approx(row['f1'])


def only_row(tmp_path):
    (run,) = (tmp_path / 'out').glob('*-main')
    (row,) = json.loads((run / 'results.json').read_text())['rows']
    return row
