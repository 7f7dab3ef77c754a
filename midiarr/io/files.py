"""File-system helpers shared by every reader and writer: atomic writes, path checks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from midiarr.errors import InputError, OutputError


def _default_file_mode() -> int:
    """Permissions a plain ``open()`` would give a new file (mkstemp makes them private)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _default_file_mode()


def publish(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Give a finished temporary file normal permissions and rename it onto ``target``."""
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, target)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        publish(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_input_bytes(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """Read an input file, refusing missing paths, folders and files over ``max_bytes``."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a file")
    size = p.stat().st_size
    if size > max_bytes:
        raise InputError(f"{p}: file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None


def check_output_path(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], force: bool) -> None:
    """Refuse to overwrite the input file itself unless ``force`` is given."""
    src, dst = Path(input_path), Path(output_path)
    same = False
    try:
        same = dst.exists() and src.exists() and src.resolve() == dst.resolve()
    except OSError:
        same = False
    if same and not force:
        raise OutputError(f"output {dst} is the input file; choose another path or pass --force")
