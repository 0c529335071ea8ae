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


def test_batch_equals_single_frames(sample_frames):
    frames, _ = sample_frames
    spec = Preprocessing()
    batch = prepare_batch(frames[:3], spec)
    assert np.array_equal(batch[1], prepare(frames[1], spec))


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
