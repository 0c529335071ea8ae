"""Helpers for tests that run the nodes as separate processes and watch them from rclpy."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from contextlib import contextmanager

import rclpy
from rclpy.executors import SingleThreadedExecutor
from skin_screening.launching import NodeSpec


def node_process(executable: str, name: str, env: dict, log_path, **params) -> subprocess.Popen:
    spec = NodeSpec('skin_screening', executable, name, params=params)
    return subprocess.Popen(
        spec.argv(), env=env, stdout=open(log_path, 'w'), stderr=subprocess.STDOUT
    )


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def probe_node(name: str = 'probe'):
    """An rclpy node spinning in a background thread of the test process."""
    rclpy.init()
    node = rclpy.create_node(name)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.05)
