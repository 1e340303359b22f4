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


#: the renderer's modules: the page is made from registered declarations, not analysis names
RENDERER = ("render", "narrative", "directives", "slugs", "numbering", "pagestream", "assets", "cells", "csp")


def _code_words(path: Path) -> set[str]:
    """Every identifier and every string constant of a module but its docstrings, lower case."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    words = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            words.add(n.id)
        elif isinstance(n, ast.Attribute):
            words.add(n.attr)
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            words.add(n.name)
        elif isinstance(n, ast.arg):
            words.add(n.arg)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            words.add(n.value)
        elif isinstance(n, ast.ImportFrom):
            words |= {n.module or ""} | {a.name for a in n.names}
        elif isinstance(n, ast.Import):
            words |= {a.name for a in n.names}
    return {w.lower() for w in words}


def test_the_renderer_knows_no_analysis_by_name():
    from dinoreport.analyses import list_analyses

    # the built-in analyses' names, and the words of the two that contribute to the narrative
    names = set(list_analyses()) | {"claim", "explorer", "verdict"}
    found = {f"{m}.py: {name}" for m in RENDERER for w in _code_words(PACKAGE / f"{m}.py")
             for name in names if name in w}
    assert found == set()
