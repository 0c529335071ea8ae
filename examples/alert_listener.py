"""A third-party consumer of the wearable's alerts: only rclpy and the public messages."""

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from skin_screening_msgs.msg import Alert

# The alert is latched: reliable + transient local, depth 1. A consumer that starts late still
# receives the current alert state at once (a volatile subscription would miss it).
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
LEVELS = {Alert.CLEAR: 'clear', Alert.SUSPICIOUS: 'SUSPICIOUS', Alert.REFER: 'REFER'}


class AlertListener(Node):
    def __init__(self):
        super().__init__('alert_listener')
        self.create_subscription(Alert, 'alert', self.on_alert, LATCHED)

    def on_alert(self, msg: Alert) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        print(
            f'{LEVELS[msg.level]} at {stamp:.3f}: p={msg.probability:.2f} '
            f'over {msg.frames} frames ({msg.text})',
            flush=True,
        )


def main():
    rclpy.init()
    node = AlertListener()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
