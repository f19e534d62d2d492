"""Package discovery: the folders below become the subpackages of ``vitforge``.

``vitforge`` is a namespace package assembled from these folders; every
package under them (a folder with ``__init__.py``) is found, so none is
listed by hand. Everything else about the distribution is in
``pyproject.toml``.
"""

from setuptools import find_packages, setup

#: Import package -> folder of this repository.
ROOTS = {"vitforge": "common", "vitforge.hw": "hw", "vitforge.sw": "sw",
         "vitforge.sim": "sim", "vitforge.boards": "boards"}

setup(package_dir=ROOTS,
      packages=[package for name, folder in ROOTS.items()
                for package in (name, *(f"{name}.{sub}" for sub in find_packages(folder)))])
