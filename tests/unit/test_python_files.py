"""The archive of a job's Python files: round trip, reuse, and no path escaping its directory."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest

from weir.graph import python_files


def test_round_trip_puts_files_and_packages_on_the_path(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("A = 1\n")
    pkg = tmp_path / "p" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("M = 2\n")
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "b.py").write_text("B = 3\n")
    (mods / "__pycache__").mkdir()
    (mods / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"junk")
    data = python_files.pack(b"GRAPH", [str(tmp_path / "a.py"), str(pkg), str(mods)])
    assert data.startswith(python_files.MAGIC)
    root = tmp_path / "worker"
    try:
        graph, target = python_files.unpack(data, str(root))
        assert graph == b"GRAPH" and target is not None
        names = sorted(str(p.relative_to(target)) for p in Path(target).rglob("*") if p.is_file())
        assert names == ["a.py", "b.py", "pkg/__init__.py", "pkg/m.py"]
        assert sys.path[0] == target
        again, same = python_files.unpack(data, str(root))  # extracted once, reused
        assert (again, same) == (b"GRAPH", target)
    finally:
        while target in sys.path:
            sys.path.remove(target)


def test_plain_graph_bytes_pass_through(tmp_path: Path) -> None:
    assert python_files.pack(b"G", []) == b"G"
    assert python_files.unpack(b"G", str(tmp_path)) == (b"G", None)


def test_an_archive_escaping_its_directory_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.py", "x = 1")
    zbytes = buf.getvalue()
    data = python_files.MAGIC + len(zbytes).to_bytes(8, "big") + zbytes + b"G"
    with pytest.raises(ValueError, match="unsafe path"):
        python_files.unpack(data, str(tmp_path))
    assert not (tmp_path / "python-files" / "evil.py").exists()
