"""Reading the user's text files (report.toml, the image manifest, the narrative) as UTF-8.

One rule for all of them: UTF-8, with or without a byte order mark (editors on Windows write
one). Anything else is refused with the reason, so that each caller can name its file and say
"save it as UTF-8" instead of a codec traceback, a first line read as text, or a TOML error
about NUL characters.
"""
from __future__ import annotations

import codecs
from pathlib import Path

__all__ = ["NotUTF8", "read_utf8"]


class NotUTF8(ValueError):
    """The file is not UTF-8 text; the message is the reason (no file name, no advice)."""


def read_utf8(path: Path) -> str:
    """The text of ``path``, decoded as UTF-8 with a leading byte order mark dropped.

    Raises
    ------
    NotUTF8
        UTF-16/32 (byte order mark, or the NUL bytes of UTF-16 without one), or bytes that
        are not UTF-8; the message says which and where.
    OSError
        The file cannot be read.
    """
    data = Path(path).read_bytes()
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise NotUTF8("it is UTF-32 text (byte order mark)")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise NotUTF8("it is UTF-16 text (byte order mark)")
    if b"\x00" in data:
        # No text format here allows NUL; ASCII saved as UTF-16 without a mark is every other byte 0.
        raise NotUTF8(f"NUL byte at byte {data.index(0)}: UTF-16 without a byte order mark, or not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NotUTF8(f"{e.reason} at byte {e.start}") from None
