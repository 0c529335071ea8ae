"""skin_screening_msgs cross real process boundaries through rclpy / Fast DDS intact."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

PEER = str(Path(__file__).with_name('ros_peer.py'))

DIAGNOSIS = {
    'header': {'stamp': {'sec': 1700000000, 'nanosec': 123456789}, 'frame_id': 'wearable_cam'},
    'decision': 1,
    'label': 'skin_cancer',
    'unassessable_reason': '',
    'probability': 0.8125,
    'threshold': 0.375,
    'operating_point': 'screening',
    'entropy': 0.5,
    'epistemic': float('nan'),
    'ambiguity': 0.5,
    'referral_score': 'ambiguity',
    'referral_threshold': 0.25,
    'precision': 'int8',
    'backend': 'onnxruntime',
    'model_id': 'mobilenetv2-a0.5@1a2b3c4d',
    'inference_ms': 1.875,
    'latency_ms': 3.25,
}
POWER = {
    'header': {'stamp': {'sec': 42, 'nanosec': 7}, 'frame_id': ''},
    'source': 'ina3221',
    'total_watts': 7.5,
    'rails': [
        {'name': 'VDD_IN', 'volts': 5.0, 'amps': 1.5, 'watts': 7.5},
        {'name': 'VDD_CPU_GPU_CV', 'volts': 5.0, 'amps': 0.5, 'watts': 2.5},
    ],
}


def _exchange(ros_env, topic, type_name, payload):
    sub = subprocess.Popen(
        [sys.executable, PEER, 'sub', topic, type_name, '1', '20'],
        stdout=subprocess.PIPE,
        text=True,
        env=ros_env,
    )
    assert sub.stdout.readline().strip() == 'READY'
    pub = subprocess.Popen(
        [sys.executable, PEER, 'pub', topic, type_name, json.dumps(payload), '20'], env=ros_env
    )
    out, _ = sub.communicate(timeout=60)
    pub.terminate()
    pub.wait(timeout=10)
    assert sub.returncode == 0, 'subscriber process received nothing'
    return json.loads(out.splitlines()[0])


@pytest.mark.ros
def test_diagnosis_fields_arrive_intact(ros_env):
    got = _exchange(ros_env, '/diagnosis', 'skin_screening_msgs/msg/Diagnosis', DIAGNOSIS)
    assert math.isnan(got.pop('epistemic'))
    expected = {k: v for k, v in DIAGNOSIS.items() if k != 'epistemic'}
    assert got == expected


@pytest.mark.ros
def test_power_sample_with_rails_arrives_intact(ros_env):
    got = _exchange(ros_env, '/power', 'skin_screening_msgs/msg/PowerSample', POWER)
    assert got == POWER
