"""ament_python build of the skin_screening package (colcon on a device with system ROS 2).

In the uv environment the same package is importable through the root pyproject.toml instead.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = 'skin_screening'
NODES = ['camera', 'inference', 'power_monitor', 'recorder', 'bag_player']
REPO = Path(__file__).resolve().parents[3]


def shipped_models():
    """data/models/<name>/* -> share/skin_screening/data/models/<name>/ (the launch default)."""
    return [
        (
            f'share/{package_name}/data/models/{folder.name}',
            [str(f) for f in sorted(folder.iterdir()) if f.is_file()],
        )
        for folder in sorted((REPO / 'data' / 'models').glob('*'))
        if folder.is_dir()
    ]


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('../../../launch/*.xml')),
        ('share/' + package_name + '/launch/params', glob('../../../launch/params/*.yaml')),
        *shipped_models(),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='Skin screening maintainers',
    maintainer_email='maintainers@example.org',
    description='Wearable skin-lesion screening nodes over a ROS-free core.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [f'{node}_node = {package_name}.nodes.{node}:main' for node in NODES],
    },
)
