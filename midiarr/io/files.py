"""File-system helpers shared by every reader and writer: atomic writes, path checks."""

from __future__ import annotations

import os
import stat
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
    """Read an input file: a regular file only (no folder, FIFO or device), at most ``max_bytes``.

    The cap is enforced while reading, not from ``st_size``: a symlink to ``/dev/zero`` or a file
    that grows while it is read stops at the cap instead of filling memory. The file is opened
    without blocking, so a FIFO with no writer is refused instead of waiting forever.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a folder, expected a file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{p}: is a folder, expected a file")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{p}: not a regular file (a pipe, device or socket); save it to a file first")
        if info.st_size > max_bytes:
            raise InputError(f"{p}: file is {info.st_size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise InputError(f"{p}: file is over the {max_bytes / 1e6:.0f} MB limit")
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def check_output_folder(output_path: str | os.PathLike[str], mkdir: bool = False) -> Path:
    """Make sure an output file's folder is there (created only when ``mkdir``); the real path of the output.

    The folder is made before any comparison with the input, so ``nosuchdir/../song.mid`` is
    compared as the file it will really be.
    """
    dst = Path(output_path)
    parent = dst.parent if str(dst.parent) else Path(".")
    _check_name_lengths(dst)
    if not parent.is_dir():
        if parent.exists():
            raise OutputError(f"cannot write {dst}: {parent} is not a folder")
        if not mkdir:
            raise OutputError(f"cannot write {dst}: folder {parent} does not exist (create it, or pass --mkdir)")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create folder {parent}: {exc.strerror or exc}") from None
    if dst.is_dir():
        raise OutputError(f"cannot write {dst}: it is a folder, expected a file name")
    return Path(os.path.realpath(dst))


def _check_name_lengths(path: Path) -> None:
    """Refuse a path the file system cannot hold (a name or the whole path too long) with one line."""
    limit = 255
    try:
        limit = os.pathconf(path.parent if path.parent.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        pass
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise OutputError(f"cannot write {str(path)[:60]}...: a name in the path is over {limit} bytes")
    if len(os.fsencode(str(path))) > 4000:
        raise OutputError(f"cannot write {str(path)[:60]}...: the path is over 4000 bytes")


def check_output_dir(path: str | os.PathLike[str], input_path: str | os.PathLike[str] | None = None) -> Path:
    """Check a folder an output goes into (made later by the command): not an existing file, not the
    input, and a name the file system can hold."""
    p = Path(path)
    _check_name_lengths(p)
    if p.exists() and not p.is_dir():
        raise OutputError(f"cannot write into {p}: it is a file, not a folder")
    if input_path is not None and Path(os.path.realpath(p)) == Path(os.path.realpath(input_path)):
        raise OutputError(f"cannot write into {p}: it is the input")
    return p


def check_regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """Refuse a missing path, a folder, a FIFO or a device as an input file (opening a FIFO would wait
    forever, and a device can be read without end)."""
    p = Path(path)
    try:
        info = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{what} {p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{what} {p}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{what} {p}: is a folder, expected a file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {p}: not a regular file (a pipe, device or socket)")
    return p


def check_output_path(
    input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], force: bool, mkdir: bool = False
) -> None:
    """Refuse to overwrite the input file itself unless ``force`` is given; see `check_output_folder`."""
    src = Path(input_path)
    real_dst = check_output_folder(output_path, mkdir)
    same = Path(os.path.realpath(src)) == real_dst
    if not same and real_dst.exists() and src.exists():
        try:
            same = os.path.samefile(src, real_dst)  # a hard link is the same file under another name
        except OSError:
            same = False
    if same and not force:
        raise OutputError(f"output {output_path} is the input file; choose another path or pass --force")
