import numpy as np
import pytest
from skin_screening.core.preprocess import (
    FrameError,
    Preprocessing,
    check_frame,
    load_rgb,
    prepare,
    prepare_batch,
    resize,
)


def test_camera_sized_frame_becomes_model_tensor(ham_fullres):
    frame = load_rgb(next((ham_fullres / 'images').glob('*.jpg')))
    assert frame.shape == (450, 600, 3)
    x = prepare(frame, Preprocessing())
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    assert -1.0 <= x.min() < 0 < x.max() <= 1.0


@pytest.mark.parametrize('policy', ['center_crop', 'pad', 'stretch'])
def test_every_resize_policy_gives_the_input_size(policy):
    frame = np.full((150, 200, 3), 200, np.uint8)
    out = resize(frame, Preprocessing(input_size=96, resize=policy))
    assert out.shape == (96, 96, 3)
    if policy == 'pad':  # letterbox: black bars above and below a landscape frame
        assert out[0].max() == 0 and out[48].min() == 200


def test_center_crop_keeps_the_centre():
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[:, 100:200] = 255  # only the central third is white
    out = resize(frame, Preprocessing(input_size=64))
    assert out.min() > 200  # the crop is the central square


def test_the_batch_is_the_documented_crop_and_scaling_computed_here(sample_frames):
    """prepare_batch against the preprocessing written out here with cv2 and numpy: the short
    side scaled to 224 (area filter), the centre 224 x 224 kept, x / 127.5 - 1, RGB, and with
    views=2 each frame followed by its 90-degree rotation."""
    import cv2

    frames = sample_frames[0][:3]
    batch = prepare_batch(frames, Preprocessing(), views=2)
    assert batch.shape == (6, 224, 224, 3) and batch.dtype == np.float32
    for i, frame in enumerate(frames):
        h, w = frame.shape[:2]
        f = 224 / min(h, w)
        new_w, new_h = round(w * f), round(h * f)
        scaled = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA).astype(float)
        top, left = (new_h - 224) // 2, (new_w - 224) // 2
        expected = scaled[top : top + 224, left : left + 224] / 127.5 - 1
        assert np.abs(batch[2 * i] - expected).mean() < 0.01  # 0.6 grey levels (see _resize)
        assert np.array_equal(batch[2 * i + 1], np.rot90(batch[2 * i], 1, axes=(0, 1)))


@pytest.mark.parametrize(
    ('frame', 'message'),
    [
        (np.zeros((0, 0, 3), np.uint8), 'empty'),
        (np.zeros((64, 64), np.uint8), 'HxWx3'),
        (np.zeros((64, 64, 3), np.float32), '8-bit'),
        (np.zeros((16, 64, 3), np.uint8), 'smaller'),
    ],
)
def test_bad_frames_are_refused_with_the_reason(frame, message):
    with pytest.raises(FrameError, match=message):
        check_frame(frame)


def test_corrupt_and_missing_files_are_refused(tmp_path):
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\xff\xd8 not really a jpeg')
    with pytest.raises(FrameError, match='corrupt'):
        load_rgb(bad)
    with pytest.raises(FrameError, match='missing'):
        load_rgb(tmp_path / 'nope.jpg')


def test_colour_constancy_removes_a_colour_cast(sample_frames):
    frames, _ = sample_frames
    spec = Preprocessing(color_constancy=6)
    cast = np.clip(frames[0] * np.array([1.2, 1.0, 0.8]), 0, 255).astype(np.uint8)
    plain = np.abs(prepare(frames[0], Preprocessing()) - prepare(cast, Preprocessing())).mean()
    corrected = np.abs(prepare(frames[0], spec) - prepare(cast, spec)).mean()
    assert corrected < plain / 3
    grey = np.full((64, 64, 3), 128, np.uint8)  # a grey world is left as it is
    assert np.allclose(prepare(grey, spec), prepare(grey, Preprocessing()), atol=1e-4)
    assert np.array_equal(prepare_batch(frames[:2], spec)[1], prepare(frames[1], spec))


def test_preprocessing_round_trips_through_the_card():
    spec = Preprocessing(input_size=112, color_constancy=6)
    assert Preprocessing.from_dict(spec.to_dict()) == spec
    assert Preprocessing.from_dict({'input_size': 224}).color_constancy == 0  # older cards
    with pytest.raises(ValueError, match='color_constancy'):
        Preprocessing(color_constancy=-1)
