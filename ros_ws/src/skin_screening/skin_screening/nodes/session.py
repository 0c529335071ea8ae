"""The session folder as the recorder and the findings node share it: parameters, folder,
retention (core/sessions.py does the work)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.node import Node

from ..core.sessions import expire_sessions, session_dir
from .common import descriptor

RETENTION_PERIOD_S = 3600.0  # retention runs at start and hourly


def session_parameters(node: Node) -> None:
    """The parameters both nodes read (launch/params/session.yaml gives both the same)."""
    p = node.declare_parameter
    p('run_name', 'session', descriptor('Suffix of the session folder.', read_only=True))
    p(
        'session',
        '',
        descriptor(
            "The session folder's name ('': <launch start>-<launch pid>-<run_name>, the same "
            'for every node of one launch).',
            read_only=True,
        ),
    )
    p(
        'max_disk_mb',
        200.0,
        descriptor(
            'One bound over everything under output_dir (every session: CSVs, evidence).',
            read_only=True,
            float_range=(0.01, 1e7),
        ),
    )
    p(
        'retention_days',
        30.0,
        descriptor(
            'Sessions last written longer ago are removed, at start and hourly (0: never).',
            read_only=True,
            float_range=(0.0, 36500.0),
        ),
    )


@dataclass
class Session:
    node: Node
    root: Path
    folder: Path
    max_bytes: int
    retention_days: float
    _last: float = field(default=-RETENTION_PERIOD_S)

    def retention_due(self, now: float | None = None) -> list[Path]:
        """Remove expired sessions if an hour has passed since the last time; returns those
        removed (what counted the disk counts again only then)."""
        now = time.monotonic() if now is None else now
        if now - self._last < RETENTION_PERIOD_S:
            return []
        self._last = now
        removed = expire_sessions(self.root, self.retention_days, keep=self.folder)
        for gone in removed:
            self.node.get_logger().info(
                f'retention: removed session {gone.name} (older than {self.retention_days:g} days)'
            )
        return removed


def open_session(node: Node) -> Session:
    gp = node.get_parameter
    root = Path(gp('output_dir').value)
    folder = session_dir(root, gp('run_name').value, gp('session').value)
    session = Session(
        node,
        root,
        folder,
        int(gp('max_disk_mb').value * 1e6),
        float(gp('retention_days').value),
    )
    session.retention_due()  # at start, before anything counts the disk
    return session
