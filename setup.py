"""Package discovery that pyproject.toml cannot express: ``web/`` ships as the package ``ephemesh_web``."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["peer", "peer.*", "signaling", "signaling.*"]), "ephemesh_web"],
    package_dir={"ephemesh_web": "web"},
)
