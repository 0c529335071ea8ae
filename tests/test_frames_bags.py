import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from skin_screening.core.bags import (
    BagError,
    LabelledFrame,
    ground_truth,
    inspect_bag,
    read_frames,
    typestore,
    write_bag,
)
from skin_screening.core.frames import message_to_rgb, rgb_to_fields, rgb_to_jpeg
from skin_screening.core.preprocess import FrameError


def _image(**fields):
    base = {
        'encoding': 'rgb8',
        'height': 2,
        'width': 2,
        'step': 6,
        'is_bigendian': 0,
        'data': bytes(range(12)),
    }
    return SimpleNamespace(**(base | fields))


def test_rgb_bgr_and_padded_rows_decode(sample_frames):
    rgb = sample_frames[0][0]
    msg = SimpleNamespace(**rgb_to_fields(rgb))
    assert np.array_equal(message_to_rgb(msg), rgb)
    bgr = SimpleNamespace(
        **(rgb_to_fields(rgb) | {'encoding': 'bgr8', 'data': rgb[:, :, ::-1].tobytes()})
    )
    assert np.array_equal(message_to_rgb(bgr), rgb)
    h, w = rgb.shape[:2]
    padded = np.zeros((h, w * 3 + 8), np.uint8)
    padded[:, : w * 3] = rgb.reshape(h, -1)
    msg = SimpleNamespace(**(rgb_to_fields(rgb) | {'step': w * 3 + 8, 'data': padded.tobytes()}))
    assert np.array_equal(message_to_rgb(msg), rgb)


def test_compressed_decodes(sample_frames):
    rgb = sample_frames[0][0]
    out = message_to_rgb(SimpleNamespace(format='jpeg', data=rgb_to_jpeg(rgb, 95)))
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 4


@pytest.mark.parametrize(
    ('fields', 'message'),
    [
        ({'encoding': 'mono8'}, 'not a colour image'),
        ({'encoding': '32FC3x'}, 'unsupported encoding'),
        ({'data': b''}, 'empty image'),
        ({'data': bytes(11)}, 'do not match'),
        ({'height': 2, 'width': 2}, 'smaller than'),
    ],
)
def test_bad_images_are_refused_with_the_reason(fields, message):
    with pytest.raises(FrameError, match=message):
        message_to_rgb(_image(**fields))


def test_corrupt_jpeg_is_refused():
    with pytest.raises(FrameError, match='does not decode'):
        message_to_rgb(SimpleNamespace(format='jpeg', data=b'\xff\xd8garbage'))


@pytest.fixture
def frames(sample_frames):
    images, y = sample_frames
    return [
        LabelledFrame(images[i], int(y[i]), 'mel' if y[i] else 'nv', f'img{i}', f'L{i}')
        for i in range(6)
    ]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_round_trip_keeps_frames_and_ground_truth(tmp_path, frames, storage):
    bag = tmp_path / 'bag'
    assert write_bag(bag, frames, rate_hz=5.0, storage=storage, compressed=True) == 6
    assert inspect_bag(bag, '/image_raw').topic.count == 6
    read = list(read_frames(bag, '/image_raw'))
    truth = ground_truth(bag)
    assert [f.stamp_ns for f in read] == sorted(truth)
    assert read[1].stamp_ns - read[0].stamp_ns == 200_000_000
    assert [truth[f.stamp_ns]['image_id'] for f in read] == [f.image_id for f in frames]
    compressed = list(read_frames(bag, '/image_raw/compressed'))
    assert compressed[0].msgtype == 'sensor_msgs/msg/CompressedImage'
    # the pixels themselves: raw frames exact, JPEG frames close (quality 90)
    store = typestore()
    for frame, raw, jpeg in zip(frames, read, compressed):
        image = store.deserialize_cdr(raw.raw, raw.msgtype)
        assert np.array_equal(message_to_rgb(image), frame.rgb)
        decoded = message_to_rgb(store.deserialize_cdr(jpeg.raw, jpeg.msgtype))
        assert np.abs(decoded.astype(int) - frame.rgb).mean() < 3.0


def test_truncated_bag_is_a_clear_error(tmp_path, frames):
    bag = tmp_path / 'bag'
    write_bag(bag, frames * 3)
    data_file = next(bag.glob('*.mcap'))
    data = data_file.read_bytes()
    data_file.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(BagError, match='truncated|corrupt|cannot open'):
        list(read_frames(bag))


def test_missing_and_non_bags_are_clear_errors(tmp_path):
    with pytest.raises(BagError, match='not found'):
        list(read_frames(tmp_path / 'nope'))
    (tmp_path / 'junk').mkdir()
    (tmp_path / 'junk' / 'metadata.yaml').write_text('not: a bag')
    with pytest.raises(BagError, match='cannot open'):
        list(read_frames(tmp_path / 'junk'))
    shutil.rmtree(tmp_path / 'junk')
