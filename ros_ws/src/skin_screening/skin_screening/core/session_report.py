"""One self-contained HTML file of a session for the wearer's clinician (ROS-free).

A session is a recorder run folder (diagnoses.csv, alerts.csv, power.csv, energy.csv) and the
findings node's evidence of the same time span (<run>/findings/, core/findings.py; before
<run>/../findings/). The page
embeds every image (base64) and uses no script and no network: it opens offline on a phone.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .recording import read_rows

# A card shows a frame 14em wide: 448 pixels covers it at twice a phone's CSS pixel density.
THUMBNAIL_SIDE = 448
RISK = {'refer': 1, 'suspicious': 2}  # REFER (the model does not know) first, then suspicious


def _rows(path: Path) -> list[dict]:
    return read_rows(path) if path.is_file() else []


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def _img(data: bytes, mime: str, alt: str) -> str:
    src = f'data:{mime};base64,{base64.b64encode(data).decode()}'
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def session_episodes(run_dir: Path, findings: Path | None = None) -> list[tuple[dict, Path]]:
    """(episode.json, folder) of the findings in this run's time span, riskiest first."""
    diagnoses = _rows(run_dir / 'diagnoses.csv')
    root = findings or run_dir / 'findings'
    if not root.is_dir():  # sessions recorded before evidence moved into the session folder
        root = run_dir.parent / 'findings'
    if not diagnoses or not root.is_dir():
        return []
    first, last = int(diagnoses[0]['stamp_ns']), int(diagnoses[-1]['stamp_ns'])
    found = []
    for path in sorted(root.glob('*/episode.json')):
        episode = json.loads(path.read_text())
        if first <= episode['start_ns'] <= last:
            found.append((episode, path.parent))
    found.sort(key=lambda e: (RISK.get(e[0]['level'], 3), -e[0]['max_probability']))
    return found


def timeline_png(diagnoses: list[dict], episodes: list[tuple[dict, Path]]) -> bytes:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    t0 = int(diagnoses[0]['stamp_ns'])
    t = np.array([(int(d['stamp_ns']) - t0) / 1e9 for d in diagnoses])
    p = np.array([float(d['probability']) for d in diagnoses])
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.plot(t, p, '.-', lw=0.5, ms=3, color='#1f77b4', label='probability of skin cancer')
    ax.axhline(
        float(diagnoses[0]['threshold']), color='grey', ls='--', lw=0.8, label='decision threshold'
    )
    for i, (episode, _) in enumerate(episodes):
        start = (episode['start_ns'] - t0) / 1e9
        end = ((episode.get('end_ns') or int(diagnoses[-1]['stamp_ns'])) - t0) / 1e9
        colour = '#d62728' if episode['level'] == 'suspicious' else '#9467bd'
        ax.axvspan(start, max(end, start + 0.05), color=colour, alpha=0.2)
        ax.annotate(f'F{i + 1}', (start, 1.0), fontsize=8, color=colour, va='top')
    ax.set(
        xlabel='time in session (s)',
        ylabel='p',
        ylim=(0, 1.02),
        title='Probability per frame; shaded: alert episodes (F1, F2, ...: findings below)',
    )
    ax.legend(loc='lower right', fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=110)
    plt.close(fig)
    return buf.getvalue()


def thumbnail(path: Path, side: int = THUMBNAIL_SIDE, quality: int = 80) -> bytes:
    """An evidence image at most `side` pixels on its longer side (what a card shows), JPEG."""
    import cv2

    data = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return data
    scale = side / max(image.shape[:2])
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok and len(buf) < len(data) else data


def _card(i: int, episode: dict, folder: Path) -> str:
    frames = []
    for stamp in sorted(episode['kept'], key=episode['kept'].get, reverse=True):
        record_path = folder / f'{stamp}.json'
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        pictures = [
            _img(thumbnail(folder / f'{stamp}{suffix}'), 'image/jpeg', f'{what} {stamp}')
            for suffix, what in (('.jpg', 'frame'), ('.cam.jpg', 'CAM overlay'))
            if (folder / f'{stamp}{suffix}').is_file()
        ] or ['<p class="note">image dropped (disk bound) or not received</p>']
        numbers = ''.join(
            f'<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>'
            for k, v in (
                ('probability', f'{record.get("probability", float("nan")):.3f}'),
                ('decision', record.get('label', '')),
                ('entropy (nats)', f'{record.get("entropy", float("nan")):.3f}'),
                ('ambiguity', f'{record.get("ambiguity", float("nan")):.3f}'),
                ('precision', f'{record.get("precision", "")} on {record.get("backend", "")}'),
                ('model', record.get('model_id', '')),
                (
                    'power',
                    'not measured'
                    if record.get('power_w') is None
                    else f'{record["power_w"]:.2f} W',
                ),
                ('captured', _when(int(stamp))),
            )
        )
        frames.append(f'<div class="frame">{"".join(pictures)}<table>{numbers}</table></div>')
    end = episode.get('end_ns') or episode['start_ns']
    level = html.escape(episode['level'])
    return (
        f'<section class="card {level}" id="finding-{i}"><h2>F{i}: {level}, max p = '
        f'{episode["max_probability"]:.3f}</h2><p>{_when(episode["start_ns"])}, '
        f'{(end - episode["start_ns"]) / 1e9:.1f} s, {episode["frames_seen"]} frames in the '
        f'episode; alert: {html.escape(episode.get("text", ""))}'
        + (f'; {episode["dropped"]} images dropped (disk bound)' if episode.get('dropped') else '')
        + f'</p>{"".join(frames)}</section>'
    )


STYLE = """body{font-family:sans-serif;margin:1em;max-width:60em}img{max-width:100%;height:auto}
.card{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;margin:1em 0}
.card.refer{border-left:6px solid #9467bd}.card.suspicious{border-left:6px solid #d62728}
.frame{display:flex;flex-wrap:wrap;gap:.5em;align-items:flex-start;margin:.5em 0}
.frame img{width:14em}th{text-align:left;padding-right:1em}.note{color:#888}
.gate{border:2px solid #c60;padding:0 1em;margin-bottom:1em}"""


def build_report(run_dir: Path, findings: Path | None = None, out: Path | None = None) -> Path:
    """Write the session's report (default: <run_dir>/report.html) and return its path."""
    run_dir = Path(run_dir)
    from .recording import DIAGNOSIS_FIELDS

    path = run_dir / 'diagnoses.csv'
    if not path.is_file():
        raise FileNotFoundError(f'{run_dir} holds no diagnoses.csv: not a recorder run folder')
    with path.open() as f:
        missing = set(DIAGNOSIS_FIELDS) - set(csv.DictReader(f).fieldnames or ())
    if missing:
        raise ValueError(f"{path} is not the recorder's (missing columns: {sorted(missing)})")
    diagnoses = _rows(path)
    if not diagnoses:  # every frame rejected, or none came: say so, do not fail
        return _write(
            out or run_dir / 'report.html',
            _page(
                'Skin screening session',
                '<p>No frame was diagnosed in this session (see the '
                "nodes' /diagnostics and logs: frames rejected or none received).</p>",
            ),
        )
    episodes = session_episodes(run_dir, findings)
    decisions = Counter(d['label'] for d in diagnoses)
    energy = [float(r['joules']) for r in _rows(run_dir / 'energy.csv') if r.get('joules')]
    start, end = int(diagnoses[0]['stamp_ns']), int(diagnoses[-1]['stamp_ns'])
    summary = {
        'started': _when(start),
        'duration': f'{(end - start) / 1e9:.1f} s',
        'frames diagnosed': len(diagnoses),
        'decisions': ', '.join(f'{k} {v}' for k, v in sorted(decisions.items())),
        'referred (model unsure)': decisions.get('refer', 0),
        'alerts raised': sum(1 for a in _rows(run_dir / 'alerts.csv') if a['level'] != '0'),
        'findings': len(episodes),
        'energy': f'{sum(energy):.1f} J' if energy else 'not measured on this device',
        'model': diagnoses[0]['model_id'] + f' ({diagnoses[0]["precision"]})',
    }
    rows = ''.join(
        f'<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>' for k, v in summary.items()
    )
    cards = ''.join(_card(i + 1, e, f) for i, (e, f) in enumerate(episodes)) or (
        '<p>No alert was raised in this session: no finding.</p>'
    )
    body = (
        f'{gate_banner(diagnoses)}<table class="summary">{rows}</table>'
        f'{_img(timeline_png(diagnoses, episodes), "image/png", "timeline")}'
        f'<h2>Findings, riskiest first</h2>{cards}'
    )
    return _write(
        out or run_dir / 'report.html', _page(f'Skin screening session {summary["started"]}', body)
    )


def gate_banner(diagnoses: list[dict]) -> str:
    """At the top: the share of frames the gate could not judge, by reason, and what the
    wearer should do (an empty string when every frame was judged)."""
    from .gate_health import ADVICE

    reasons = Counter(d.get('unassessable_reason', '') for d in diagnoses)
    reasons.pop('', None)
    if not reasons:
        return ''
    flagged = sum(reasons.values())
    items = ''.join(
        f'<li>{html.escape(r)}: {n} frames ({n / len(diagnoses):.0%}): '
        f'{html.escape(ADVICE.get(r, "retake"))}</li>'
        for r, n in reasons.most_common()
    )
    return (
        f'<div class="gate"><p><b>{flagged} of {len(diagnoses)} frames '
        f'({flagged / len(diagnoses):.0%}) could not be judged</b>: the model says nothing about '
        f'them (not "no finding").</p><ul>{items}</ul></div>'
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>'
        f'<h1>Skin screening session</h1>{body}'
        '<p class="note">Screening aid, not a diagnosis: every finding needs a clinician.</p>'
        '</body></html>'
    )


def _write(out: Path, page: str) -> Path:
    """The page, owner-only whatever the umask: it embeds the skin photographs."""
    out = Path(out)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_TRUNC
    with os.fdopen(fd, 'w') as f:
        f.write(page)
    return out
