"""The inference node's parameters: (name, default, description, descriptor limits).

precision, backend, operating point and the decision values are hot-swappable (SWAP_PARAMS);
the rest are read at start.
"""

from __future__ import annotations

from ..core.model_card import DEFAULT_MODEL
from ..core.precision import Backend, Precision

SWAP_PARAMS = {
    'precision',
    'backend',
    'operating_point',
    'threshold',
    'referral_threshold',
    'tta_views',
}

RO = {'read_only': True}
PARAMETERS = [
    (
        'model_dir',
        DEFAULT_MODEL,
        'Folder with model_card.json and the ONNX variants.',
        RO,
    ),
    ('precision', 'fp32', 'Engine precision.', {'choices': [x.value for x in Precision]}),
    ('backend', 'onnxruntime', 'Inference backend.', {'choices': [x.value for x in Backend]}),
    (
        'operating_point',
        '',
        "Named operating point of the model card ('screening': recall >= 0.90 on the CV; "
        "'balanced': max F1), each precision with its own calibration; empty = the card's "
        'default. A `threshold` >= 0 overrides it (Diagnosis says "custom").',
        {},
    ),
    (
        'fallback_backend',
        '',
        'Backend to use if `backend` cannot load (empty: none, fail instead).',
        RO,
    ),
    ('threads', 0, 'CPU threads for ONNX Runtime (0 = all).', RO | {'int_range': (0, 64)}),
    (
        'threshold',
        -1.0,
        "Decision threshold; -1 = the model card's.",
        {'float_range': (-1.0, 1.0)},
    ),
    (
        'referral_threshold',
        -1.0,
        "Bound on the model card's referral score above which to REFER; -1 = the model card's "
        '(or off).',
        {'float_range': (-1.0, 1.0)},
    ),
    (
        'tta_views',
        0,
        'Test-time augmentation: dihedral views per frame in one engine call (1, 2, 4 or 8; '
        "0 = the model card's).",
        {'int_range': (0, 8)},
    ),
    (
        'publish_cam',
        False,
        'Also publish the class activation map over the model view on diagnosis/cam.',
        RO,
    ),
    ('compressed', False, 'Subscribe to sensor_msgs/CompressedImage.', RO),
    ('reliable', False, 'RELIABLE input QoS (bag replay); default sensor-data (best effort).', RO),
    (
        'queue_size',
        1,
        'Frames waiting for inference; older ones are dropped.',
        RO | {'int_range': (1, 1000)},
    ),
    ('alert_window', 15, 'Frames in the alert window.', RO | {'int_range': (1, 1000)}),
    ('alert_min_frames', 10, 'Frames needed before any alert.', RO | {'int_range': (1, 1000)}),
    (
        'alert_raise',
        -1.0,
        'Mean probability that raises an alert; -1 = the decision threshold (of the operating '
        'point, followed when it is swapped).',
        RO | {'float_range': (-1.0, 1.0)},
    ),
    (
        'alert_clear',
        -1.0,
        'Mean probability below which it clears; -1 = one logit below the raise level.',
        RO | {'float_range': (-1.0, 1.0)},
    ),
]
