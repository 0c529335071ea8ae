"""Bag metadata that a given distro's `ros2 bag play` reads.

rosbag2's metadata.yaml has a version; each distro's reader decodes the fields of the versions
it knows (rosbag2_storage/yaml.hpp): v3 compression_format/mode, v4 offered_qos_profiles as a
YAML *string* with integer policies, v5 files, v6 custom_data, v7 type_description_hash,
v8 ros_distro, v9 offered_qos_profiles as a YAML *sequence* with policy names (ros2/rosbag2#1476,
Jazzy and later). Humble's rosbag2 (0.15) writes v5 and reads offered_qos_profiles as a string
whatever the version: a v9 file fails there with "yaml-cpp: bad conversion". rosbags writes v8
and v9 only, so a Humble bag is written as v8 (string QoS) and its metadata.yaml rewritten to v5.
"""

from __future__ import annotations

from pathlib import Path

# distro -> (metadata version its rosbag2 writes, version rosbags writes before the rewrite)
DISTROS = {'humble': (5, 8), 'jazzy': (9, 9), 'kilted': (9, 9)}
_SINCE = {'custom_data': 6, 'ros_distro': 8}


def writer_version(distro: str) -> int:
    if distro not in DISTROS:
        raise ValueError(f'bag distro must be one of {sorted(DISTROS)}, not {distro!r}')
    return DISTROS[distro][1]


def rewrite_metadata(bag: Path, distro: str) -> None:
    """Make `bag`'s metadata.yaml the version `distro` writes (drop the newer fields)."""
    import yaml

    version, written = DISTROS[distro]
    if version == written:
        return
    path = bag / 'metadata.yaml'
    meta = yaml.safe_load(path.read_text())
    info = meta['rosbag2_bagfile_information']
    info['version'] = version
    for key, since in _SINCE.items():
        if version < since:
            info.pop(key, None)
    for topic in info['topics_with_message_count']:
        if version < 7:
            topic['topic_metadata'].pop('type_description_hash', None)
    path.write_text(yaml.safe_dump(meta, sort_keys=False))
