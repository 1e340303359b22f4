"""What the pages may run and load (their Content-Security-Policy), and how data rides in them.

No inline script runs: index.html loads assets/report.js, report.html allows exactly its own
script by hash (:func:`csp_single`). Page data travels in ``<script type="application/json">``
blocks, which never execute (:func:`json_for_script`). Styles keep 'unsafe-inline' for the
figures' ``style="--cols: N"`` attributes (a hash would switch 'unsafe-inline' off).
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from markupsafe import Markup

__all__ = ["CSP_SITE", "csp_single", "json_for_script"]

#: index.html's policy: files of the site only (the explorer fetches its codes: connect-src)
CSP_SITE = (
    "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


def csp_single(script: str) -> str:
    """report.html's policy: only the inline script whose text is ``script`` may run."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def json_for_script(obj: Any) -> Markup:
    """``obj`` as JSON that is safe inside ``<script type="application/json">``: ``< > &`` as
    ``\\u`` escapes, so no ``</script>`` or ``<!--`` can end or bend the block; JSON.parse
    reads it back unchanged."""
    s = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return Markup(s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
