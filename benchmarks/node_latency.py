"""Issue 5 benchmark: image -> Diagnosis latency across processes vs the bare engine, backlog at
30 fps, and a memory soak of the inference node.

    uv run python benchmarks/node_latency.py [--frames 600] [--soak 10000]

A publisher in this process sends real camera-sized lesion frames (600x450 HAM10000 originals,
or the embedded samples) at --fps to an inference node started as its own process; latency is
(Diagnosis received here) - (image stamp), same clock. The bare engine figure is the same
Classifier (preprocessing + engine) timed in-process on the same frames. The "floor" row is a
relay process that answers each frame with an empty Diagnosis at once: what the two loopback
hops cost (frame in, Diagnosis back) before any node work.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from skin_screening.bootstrap import ensure_messages  # noqa: E402
from skin_screening.launching import NodeSpec, ros_environment  # noqa: E402

# Local-only discovery, the project's Fast DDS profile, a domain of this run's own.
os.environ.update(
    ros_environment(
        domain=int(os.environ.get('ROS_DOMAIN_ID') or random.randint(151, 200)),
        large_frames=True,
    )
)

ensure_messages()

import psutil  # noqa: E402
import rclpy  # noqa: E402
import rclpy.executors  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from skin_screening.core.classifier import Classifier  # noqa: E402
from skin_screening.core.frames import rgb_to_fields, stamp_to_ns  # noqa: E402
from skin_screening.core.model_card import DEFAULT_MODEL  # noqa: E402
from skin_screening.core.preprocess import load_rgb  # noqa: E402
from skin_screening_msgs.msg import Diagnosis  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

MODEL = REPO / DEFAULT_MODEL
FULLRES = REPO.parent / 'shared/datasets/ham10000_fullres_sample/images'


def frames(count: int = 32, small: bool = False) -> list[np.ndarray]:
    folder = FULLRES if FULLRES.is_dir() and not small else REPO / 'data/samples/images'
    return [load_rgb(p) for p in sorted(folder.glob('*.jpg'))[:count]]


def bare_engine_ms(model, images, precision: str, threads: int, repeats: int = 200) -> float:
    clf = Classifier(model, precision, threads=threads)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        clf.classify([images[i % len(images)]])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class Load:
    """Publishes frames at a fixed rate and collects the diagnoses."""

    def __init__(self, node, images):
        self.node, self.images = node, images
        self.pub = node.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
        self.got: dict[int, float] = {}
        self.in_node: dict[int, tuple[float, float]] = {}
        self.sent: list[int] = []
        node.create_subscription(
            Diagnosis,
            'diagnosis',
            self._on,
            QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.messages = [rgb_to_fields(im) for im in images]

    def _on(self, msg) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        self.got[stamp] = time.time_ns()
        self.in_node[stamp] = (msg.latency_ms, msg.inference_ms)

    def run(self, count: int, fps: float) -> None:
        period = 1.0 / fps
        start = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, start + i * period - time.monotonic()))
            now = self.node.get_clock().now()
            self.sent.append(now.nanoseconds)
            self.pub.publish(
                Image(
                    header=Header(stamp=now.to_msg(), frame_id='bench'),
                    **self.messages[i % len(self.messages)],
                )
            )
        time.sleep(1.0)

    def latencies(self) -> np.ndarray:
        return np.array([(self.got[s] - s) / 1e6 for s in self.sent if s in self.got])


def start_node(model, precision: str, threads: int, **extra) -> subprocess.Popen:
    spec = NodeSpec(
        'skin_screening',
        'inference_node',
        'inference',
        params={'model_dir': str(model), 'precision': precision, 'threads': threads, **extra},
    )
    return subprocess.Popen(spec.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def start_relay() -> subprocess.Popen:
    """The ROS floor: a process that answers every frame with an empty Diagnosis at once."""
    argv = [sys.executable, __file__, '--relay']
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def relay() -> int:
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node('relay')
    pub = node.create_publisher(Diagnosis, 'diagnosis', 50)  # as the inference node's
    node.create_subscription(
        Image,
        'image_raw',
        lambda msg: pub.publish(Diagnosis(header=msg.header)),
        qos_profile_sensor_data,
    )
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def latency_row(label: str, engine_ms: float, load: Load) -> str:
    """Label, bare engine, e2e median and p99, overhead over the engine, answered, dropped."""
    lat = load.latencies()
    return (
        f'{label:<9} {engine_ms:>9.2f} {np.median(lat):>10.2f} {np.percentile(lat, 99):>8.2f} '
        f'{np.median(lat) - engine_ms:>+8.2f} {len(lat):>5}/{len(load.sent):<4}'
        f'{len(load.sent) - len(lat):>6}'
    )


def measure(node, images, start, count, fps, soak=False):
    proc = start()
    try:
        load = Load(node, images)
        deadline = time.monotonic() + 60
        while load.pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # engine warm-up inside the node
        rss = []
        if soak:
            chunk = 1000
            for done in range(0, count, chunk):
                load.run(min(chunk, count - done), fps)
                rss.append(psutil.Process(proc.pid).memory_info().rss / 1e6)
        else:
            load.run(count, fps)
        return load, rss
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--frames', type=int, default=600)
    p.add_argument('--fps', type=float, default=30.0)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--soak', type=int, default=0, help='frames for the memory soak (e.g. 10000)')
    p.add_argument('--soak-fps', type=float, default=60.0)
    p.add_argument('--small', action='store_true', help='200x150 sample frames, not 600x450')
    p.add_argument('--cam', action='store_true', help='also fp32 with the CAM overlay topic on')
    p.add_argument('--model-dir', type=Path, default=MODEL)
    p.add_argument('--relay', action='store_true', help=argparse.SUPPRESS)  # the floor's process
    args = p.parse_args()
    if args.relay:
        return relay()
    images = frames(small=args.small)
    print(
        f'frames {images[0].shape[1]}x{images[0].shape[0]}, {args.fps:g} fps, '
        f'{args.threads} engine threads, ROS_DOMAIN_ID {os.environ["ROS_DOMAIN_ID"]}, '
        f'model {args.model_dir.name}'
    )
    rclpy.init()
    node = rclpy.create_node('latency_bench')
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        print(
            f'{"precision":<9} {"engine ms":>9} {"e2e median":>10} {"e2e p99":>8} '
            f'{"overhead":>8} {"answered":>9} {"dropped":>7} {"in node":>7} {"node eng":>8}'
        )
        runs = [('fp32', {}), ('int8', {})] + ([('fp32+cam', {'publish_cam': True})] * args.cam)
        load, _ = measure(node, images, start_relay, args.frames, args.fps)
        print(f'{latency_row("floor", 0.0, load)}   (relay: no decoding, no engine)', flush=True)
        for label, extra in runs:
            precision = label.split('+')[0]
            engine = bare_engine_ms(args.model_dir, images, precision, args.threads)
            start = functools.partial(start_node, args.model_dir, precision, args.threads, **extra)
            load, _ = measure(node, images, start, args.frames, args.fps)
            print(
                f'{latency_row(label, engine, load)} '
                f'{np.median([v[0] for v in load.in_node.values()]):>7.2f} '
                f'{np.median([v[1] for v in load.in_node.values()]):>8.2f}',
                flush=True,
            )
        if args.soak:
            start = functools.partial(start_node, args.model_dir, 'int8', args.threads)
            load, rss = measure(node, images, start, args.soak, args.soak_fps, soak=True)
            print(
                f'soak: {len(load.latencies())}/{len(load.sent)} frames answered at '
                f'{args.soak_fps:g} fps; node RSS per 1000 frames (MB): '
                + ', '.join(f'{r:.0f}' for r in rss)
            )
            print(
                f'soak RSS start {rss[0]:.1f} MB, end {rss[-1]:.1f} MB '
                f'({rss[-1] - rss[0]:+.1f} MB)'
            )
    finally:
        executor.shutdown()
        spinner.join(timeout=5)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
