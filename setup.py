"""Package discovery that pyproject.toml cannot express: ``web/`` ships as the package ``ephemesh_web``.

Each directory under ``web/`` is a (data-only) subpackage, so setuptools installs its files as package
data without warnings; ``signaling.config.default_web_root`` finds it after ``pip install .``.
"""

from pathlib import Path

from setuptools import find_packages, setup

WEB = Path(__file__).resolve().parent / "web"
web_packages = [
    "ephemesh_web",
    *sorted("ephemesh_web." + ".".join(d.relative_to(WEB).parts) for d in WEB.rglob("*") if d.is_dir()),
]

setup(
    packages=[*find_packages(include=["peer", "peer.*", "signaling", "signaling.*"]), *web_packages],
    package_dir={"ephemesh_web": "web"},
    package_data={
        "peer": ["py.typed"],
        "signaling": ["py.typed"],
        **{pkg: ["*.html", "*.css", "*.js"] for pkg in web_packages},
    },
)
