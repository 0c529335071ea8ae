"""ament_python build of the skin_screening package (colcon on a device with system ROS 2).

In the uv environment the same package is importable through the root pyproject.toml instead.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = 'skin_screening'
NODES = ['camera', 'inference', 'power_monitor', 'recorder', 'bag_player', 'findings']


def shipped_files():
    """(install folder, [source files]) for the launch files, their params and the shipped models.

    Paths are relative to this folder (colcon requires it) and stay INSIDE it: `launch` and
    `models` here are links to the repository's launch/ and data/models/, so that
    `--symlink-install` mirrors them inside the build folder, from any --build-base.
    """
    share = Path('share') / package_name
    folders = [('launch', 'launch'), ('launch/params', 'launch/params')]
    folders += [
        (f'data/models/{model.name}', f'models/{model.name}')
        for model in sorted(Path('models').iterdir())
        if model.is_dir()
    ]
    return [
        (str(share / target), sorted(f for f in glob(f'{source}/*') if Path(f).is_file()))
        for target, source in folders
    ]


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        *shipped_files(),
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
