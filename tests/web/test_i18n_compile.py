"""The compiled catalog (issue 10, point 10): `make run` and the tests must not rewrite the
tracked messages.mo when it already says what the .po says, whatever the file times (a fresh
clone's are arbitrary) or the Babel version that wrote it."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from webapp.i18n import TRANSLATIONS, _up_to_date, compile_catalogs

PO_FILE = TRANSLATIONS / "ja" / "LC_MESSAGES" / "messages.po"
MO_FILE = PO_FILE.with_suffix(".mo")


def _compiled(po_text: bytes) -> bytes:
    buffer = io.BytesIO()
    write_mo(buffer, read_po(io.BytesIO(po_text)))
    return buffer.getvalue()


def _other_babel(mo: bytes) -> bytes:
    """The same catalog as another Babel release writes it (same length: offsets stay valid)."""
    found = re.search(rb"Generated-By: Babel ([0-9.]+)", mo)
    assert found
    version = found.group(1)
    other = re.sub(rb"[0-9]", b"9", version)
    assert other != version
    return mo.replace(b"Generated-By: Babel " + version, b"Generated-By: Babel " + other)


def _catalog_dir(tmp_path: Path, po: bytes, mo: bytes) -> tuple[Path, Path]:
    target = tmp_path / "ja" / "LC_MESSAGES"
    target.mkdir(parents=True)
    (target / "messages.po").write_bytes(po)
    (target / "messages.mo").write_bytes(mo)
    return target / "messages.po", target / "messages.mo"


def test_an_older_mo_that_says_the_same_is_left_alone(tmp_path: Path) -> None:
    po = PO_FILE.read_bytes()
    mo = _other_babel(_compiled(po))
    po_path, mo_path = _catalog_dir(tmp_path, po, mo)
    os.utime(mo_path, (1_000_000_000, 1_000_000_000))  # older than the .po, as after a clone
    assert compile_catalogs(tmp_path) == []
    assert mo_path.read_bytes() == mo
    assert mo_path.stat().st_mtime == 1_000_000_000


def test_a_changed_po_is_compiled_again_even_under_a_newer_mo(tmp_path: Path) -> None:
    po = PO_FILE.read_bytes()
    po_path, mo_path = _catalog_dir(tmp_path, po, _compiled(po))
    changed = po + '\nmsgid "Only in this test"\nmsgstr "テスト"\n'.encode()
    po_path.write_bytes(changed)
    os.utime(po_path, (1_000_000_000, 1_000_000_000))  # the .mo looks newer
    assert compile_catalogs(tmp_path) == [mo_path]
    assert mo_path.read_bytes() == _compiled(changed)
    assert compile_catalogs(tmp_path) == []


def test_a_missing_or_broken_mo_is_compiled(tmp_path: Path) -> None:
    po = PO_FILE.read_bytes()
    _, mo_path = _catalog_dir(tmp_path, po, b"not a catalog")
    assert compile_catalogs(tmp_path) == [mo_path]
    mo_path.unlink()
    assert compile_catalogs(tmp_path) == [mo_path]
    assert compile_catalogs(tmp_path) == []


def test_the_tracked_mo_is_up_to_date_with_the_po() -> None:
    """Else the first run would rewrite it: compile the catalog and commit the .mo with it."""
    assert _up_to_date(MO_FILE, _compiled(PO_FILE.read_bytes()))
