"""A tiny ROS 2 peer process for tests (run as a separate process, never imported by the suite).

python tests/ros_peer.py sub TOPIC TYPE COUNT [TIMEOUT_S]   JSON line per message received
python tests/ros_peer.py pub TOPIC TYPE JSON [SECONDS]      publish JSON (a dict) at 20 Hz
"""

import json
import sys
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from skin_screening.nodes.common import dict_to_message, message_to_dict, message_type


def main(argv):
    mode, topic, type_name = argv[:3]
    cls = message_type(type_name)
    rclpy.init()
    node = rclpy.create_node(f'ros_peer_{mode}')
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    try:
        if mode == 'sub':
            count, timeout = int(argv[3]), float(argv[4]) if len(argv) > 4 else 30.0
            got = []
            node.create_subscription(cls, topic, lambda m: got.append(m), qos)
            print('READY', flush=True)
            deadline = time.monotonic() + timeout
            while len(got) < count and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.1)
            for msg in got[:count]:
                print(json.dumps(message_to_dict(msg)), flush=True)
            return 0 if len(got) >= count else 1
        msg = dict_to_message(cls, json.loads(argv[3]))
        pub = node.create_publisher(cls, topic, qos)
        end = time.monotonic() + (float(argv[4]) if len(argv) > 4 else 5.0)
        while time.monotonic() < end:
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.05)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
