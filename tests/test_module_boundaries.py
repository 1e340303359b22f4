"""The math modules share checks and linear algebra through public names of their own modules
(analysis/checks.py, analysis/linalg.py), not each other's private helpers."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "generator" / "dinoreport"


def _private_imports(folder: Path) -> list[str]:
    """``file: from module import _name`` for each private name imported from another module."""
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                found += [f"{path.name}: from {'.' * node.level}{node.module} import {a.name}"
                          for a in node.names if a.name.startswith("_")]
    return found


def test_no_private_helper_is_imported_across_the_analysis_modules():
    assert _private_imports(PACKAGE / "analysis") == []
    assert _private_imports(PACKAGE / "analyses") == []
