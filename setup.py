"""The package list, which pyproject.toml cannot state: the packages found under generator/ plus
the data package dinoreport._theme, which pyproject.toml maps to the top-level templates/ folder
(the default theme). Everything else about the build is in pyproject.toml."""
from setuptools import find_namespace_packages, setup

setup(packages=sorted(find_namespace_packages("generator", include=["dinoreport", "dinoreport.*"]) + ["dinoreport._theme", "dinoreport._theme.static"]))
