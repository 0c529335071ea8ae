"""Offline evaluation by rosbag replay through the real nodes, and its scoring.

`replay()` runs launch/replay.launch.xml (inference, power monitor, recorder, bag player as
separate processes) for one precision/backend and returns the recorder's run directory.
`score_run()` matches each recorded Diagnosis to its bag frame by source stamp, counts frames
never answered, and computes the screening metrics, latency, throughput and energy.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from .core.bags import BagError, ground_truth
from .core.metrics import binary_report
from .core.postprocess import LABELS, REFER, UNASSESSABLE
from .core.recording import read_rows
from .core.sessions import utc_stamp
from .launching import package_share, parse_launch, start

# Who the bag player waits for (its parameter -> the replay nodes counted in it).
LISTENERS = {
    'image_subscribers': ('findings',),
    'diagnosis_subscribers': ('recorder', 'findings'),
    'end_subscribers': ('inference', 'power_monitor', 'recorder', 'findings'),
}


class ReplayError(RuntimeError):
    pass


def replay(
    bag: Path,
    model_dir: Path,
    precision: str,
    backend: str,
    output_dir: Path,
    rate: float = 0.0,
    env: dict[str, str] | None = None,
    timeout_s: float = 900.0,
    params: dict[str, dict[str, object]] | None = None,
    topic: str = '',
    compressed: bool = False,
    without: tuple[str, ...] = (),
) -> Path:
    """Replay `bag` through the replay launch file; returns the recorder's run directory.
    `params` overrides node parameters ({'power_monitor': {'source': 'rapl'}}); the nodes named
    in `without` are left out (e.g. 'findings', for a measurement without it)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    nodes = parse_launch(
        package_share() / 'launch' / 'replay.launch.xml',
        {
            'bag': str(bag),
            'model_dir': str(model_dir),
            'precision': precision,
            'backend': backend,
            'rate': str(rate),
            'output_dir': str(output_dir),
            'run_name': f'replay-{precision}-{backend}',
            # a folder of its own, whatever else this process replays into output_dir
            'session': f'{utc_stamp()}-replay-{precision}-{backend}',
            'topic': topic,
            'compressed': str(compressed).lower(),
        },
    )
    nodes = [spec for spec in nodes if spec.name not in without]
    # Every topic of this replay (relative names) under a namespace of its own: another replay
    # or node on the same ROS domain (the same bag, the same stamps) never answers its frames.
    namespace = f'/replay_{os.getpid()}_{secrets.token_hex(3)}'
    for spec in nodes:
        spec.namespace = namespace
        if spec.name == 'bag_player':
            spec.params['progress'] = False
            spec.params['publish_log'] = str(output_dir / 'published.csv')
            spec.params['accounting'] = str(output_dir / 'accounting.json')
            for name, listeners in LISTENERS.items():  # fewer to wait for: nodes left out
                spec.params[name] = spec.all_params()[name] - len(set(listeners) & set(without))
        spec.params.update((params or {}).get(spec.name, {}))
    logs = output_dir / 'logs'
    logs.mkdir(exist_ok=True)
    procs = start(nodes, env, logs)
    player = procs['bag_player']
    try:
        deadline = time.monotonic() + timeout_s
        while player.poll() is None:
            # a node may end with code 0 once the player announced the end (exit_with_replay)
            dead = [n for n, p in procs.items() if n != 'bag_player' and p.poll()]
            if dead:
                raise ReplayError(
                    f'node {dead[0]} exited early (code '
                    f'{procs[dead[0]].returncode}); see {logs / dead[0]}.log'
                )
            if time.monotonic() > deadline:
                raise ReplayError(f'replay did not finish within {timeout_s:.0f} s')
            time.sleep(0.2)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    if player.returncode == 2:
        raise ReplayError(f'bag player could not open {bag}; see {logs / "bag_player.log"}')
    runs = sorted(
        p for p in output_dir.iterdir() if p.is_dir() and p.name not in ('logs', 'findings')
    )
    if not runs:
        raise ReplayError(f'the recorder wrote nothing under {output_dir}')
    note = (logs / 'bag_player.log').read_text() if player.returncode else ''
    if note:
        (runs[-1] / 'replay_error.txt').write_text(note)
    return runs[-1]


def read_diagnoses(run_dir: Path) -> list[dict]:
    return read_rows(run_dir / 'diagnoses.csv')


def energy_per_inference(run_dir: Path) -> float | None:
    path = run_dir / 'energy.csv'
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    joules = sum(float(r['joules']) for r in rows)
    count = sum(int(r['inferences']) for r in rows)
    return joules / count if count and np.isfinite(joules) else None


def replay_latency(row: dict, sent: dict[int, int]) -> float:
    """Milliseconds from the player publishing a frame to the recorder receiving its diagnosis.

    (A Diagnosis' own latency_ms counts from the frame's capture stamp, which for a bag is the
    recording time.) Falls back to latency_ms where the player kept no publish log.
    """
    stamp = int(row['stamp_ns'])
    if stamp not in sent:
        return float(row['latency_ms'])
    return (int(row['received_ns']) - sent[stamp]) / 1e6


def _published_rows(run_dir: Path) -> list[dict]:
    log = run_dir.parent / 'published.csv'
    return list(csv.DictReader(log.open())) if log.is_file() else []


def publish_log(run_dir: Path) -> dict[int, int]:
    return {int(r['stamp_ns']): int(r['published_ns']) for r in _published_rows(run_dir)}


def account(run_dir: Path) -> dict:
    """Every frame of one replay accounted for: in the bag, published by the player, answered by
    the inference node, recorded by the recorder, and the reason for each difference (from the
    player's log and the node's own counts). `complete` is False whenever a frame went missing."""
    path = run_dir.parent / 'accounting.json'
    counts = json.loads(path.read_text()) if path.is_file() else {}
    sent = {int(r['stamp_ns']): r.get('answered') == '1' for r in _published_rows(run_dir)}
    recorded = {int(r['stamp_ns']) for r in read_diagnoses(run_dir)} & set(sent)
    bag_frames = int(counts.get('bag_frames', len(sent)))
    published, answered = len(sent), sum(sent.values())
    reasons = []
    damage = counts.get('bag_damage', '')  # a damaged file: only its readable part was played
    if bag_frames > published:
        why = counts.get('bag_error') or damage or 'the player stopped early'
        reasons.append(f'{bag_frames - published} never published ({why})')
    elif damage:
        reasons.append(damage)
    if published > answered:
        rejected, dropped = (
            max(0, int(counts.get(k, 0))) for k in ('node_rejected', 'node_dropped')
        )
        other = max(0, published - answered - rejected - dropped)
        parts = [f'{rejected} rejected by the node (see /diagnostics)'] if rejected else []
        parts += [f'{dropped} dropped from its queue'] if dropped else []
        parts += [f'{other} got no answer in time'] if other else []
        reasons.append(f'{published - answered} unanswered: ' + ', '.join(parts))
    missing = [s for s, ok in sent.items() if ok and s not in recorded]
    if missing:
        reasons.append(f'{len(missing)} answered but not recorded (the recorder missed them)')
    return {
        'bag_frames': bag_frames,
        'published': published,
        'answered': answered,
        'recorded': len(recorded),
        'complete': bag_frames == published == answered == len(recorded) and not damage,
        'reasons': '; '.join(reasons),
    }


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float('nan')


def operational(run_dir: Path) -> dict:
    """What every replay reports, labelled or not: frames in the bag, answered, latency,
    throughput, energy, decisions by class, alerts raised, and the frame accounting."""
    counts = account(run_dir)
    sent = publish_log(run_dir)
    rows = [r for r in read_diagnoses(run_dir) if not sent or int(r['stamp_ns']) in sent]
    latency = [replay_latency(r, sent) for r in rows]
    received = sorted(int(r['received_ns']) for r in rows)
    span = (received[-1] - received[0]) / 1e9 if len(received) > 1 else 0.0
    alerts_csv = run_dir / 'alerts.csv'
    alerts = list(csv.DictReader(alerts_csv.open())) if alerts_csv.is_file() else []
    first = rows[0] if rows else {}
    return {
        'precision': first.get('precision', ''),
        'backend': first.get('backend', ''),
        'model_id': first.get('model_id', ''),
        'frames': counts['bag_frames'],
        'answered': len(rows),
        'unanswered': counts['bag_frames'] - len(rows),
        **{
            f'decisions_{label}': sum(r['label'] == label for r in rows)
            for label in LABELS.values()
        },
        'referral_rate': float(np.mean([int(r['decision']) == REFER for r in rows]))
        if rows
        else float('nan'),
        'alerts_raised': sum(a['level'] != '0' for a in alerts),
        'latency_median_ms': _median(latency),
        'latency_p90_ms': float(np.percentile(latency, 90)) if latency else float('nan'),
        'latency_p99_ms': float(np.percentile(latency, 99)) if latency else float('nan'),
        'inference_median_ms': _median([float(r['inference_ms']) for r in rows]),
        'throughput_fps': (len(rows) - 1) / span if span > 0 else float('nan'),
        'energy_j_per_inference': energy_per_inference(run_dir),
        'run_dir': str(run_dir),
    } | {f'n_{k}': v for k, v in counts.items()}


def score_run(run_dir: Path, bag: Path, truth: dict[int, dict] | None = None) -> dict:
    """operational() plus the screening metrics, matching diagnoses to the bag's ground truth (or
    `truth`, e.g. from labels_from_csv) by the frames' stamps (scored.csv: one row per answered
    labelled frame). Frames the gate found unassessable are counted, not scored."""
    truth = truth if truth is not None else ground_truth(bag)
    by_stamp = {int(r['stamp_ns']): r for r in read_diagnoses(run_dir)}
    matched = [(truth[s], by_stamp[s]) for s in truth if s in by_stamp]
    if not matched:
        raise BagError(f'no diagnosis in {run_dir} matches a frame of {bag}')
    judged = [(t, r) for t, r in matched if int(r['decision']) != UNASSESSABLE]
    if not judged:
        raise BagError(f'the gate found every frame of {bag} unassessable: nothing to score')
    y = np.array([t['y'] for t, _ in judged])
    prob = np.array([float(r['probability']) for _, r in judged])
    report = binary_report(y, prob, float(judged[0][1]['threshold']))
    sent = publish_log(run_dir)
    with (run_dir / 'scored.csv').open('w', newline='') as f:
        writer = csv.writer(f)
        header = [
            'stamp_ns',
            'y',
            'probability',
            'decision',
            'latency_ms',
            'image_id',
            'group_id',
            'label',
        ]
        writer.writerow(header)
        for stamp in sorted(s for s in truth if s in by_stamp):
            t, r = truth[stamp], by_stamp[stamp]
            latency = replay_latency(r, sent)
            writer.writerow(
                [
                    stamp,
                    t['y'],
                    r['probability'],
                    r['decision'],
                    latency,
                    t['image_id'],
                    t.get('group_id', ''),
                    t.get('label', ''),
                ]
            )
    metrics = ('accuracy', 'f1', 'recall', 'specificity', 'roc_auc', 'threshold')
    return operational(run_dir) | {
        'frames': len(truth),
        'answered': len(matched),
        'unanswered': len(truth) - len(matched),
        'operating_point': judged[0][1].get('operating_point', ''),
        'unassessable': len(matched) - len(judged),  # metrics below: the frames judged
        **{k: report[k] for k in metrics},
        'ppv': report['precision'],
    }
