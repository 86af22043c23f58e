"""Reading and writing the project's JSON/JSONL files.

Two guarantees matter to users: a file is either fully written or not there at all (atomic
replace), and a broken line is reported as ``path:line`` so it can be fixed by hand. Output is
byte-deterministic: fixed key order from the caller, no timestamps, ``\\n`` line endings.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pbb.errors import PbbError


def dumps(obj: Any) -> str:
    """Serialise one record exactly as every pbb file does (compact, UTF-8, insertion order)."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8, ``\\n`` line ends) so that readers never see a
    half-written file."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see a half-written file.

    The temporary file is created as ``open`` would create it (0666, the kernel applying the
    umask), not with ``mkstemp``'s private 0600, so colleagues can read data sets and runs on a
    shared machine.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def feed_file(h: Any, path: Path) -> Any:
    """Feed the bytes of ``path`` to the hash object ``h`` (hashlib's) in blocks, so a large
    file (a model's weights) is never in memory whole; returns ``h``."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new, uniquely named directory in ``parent`` for building something to rename into place.

    Made with mode 0777 and the kernel's umask, like ``mkdir``, not ``mkdtemp``'s private 0700:
    the directory keeps its mode when renamed to its final name.
    """
    while True:
        path = Path(parent) / f"{prefix}{os.urandom(6).hex()}"
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


@contextmanager
def directory_in_place(out: Path, parent: Path) -> Iterator[Path]:
    """Build a directory under a temporary name in ``parent``, then swap it in for ``out``: a
    reader sees the old directory or the new one, never half of either; an error (or a kill
    before the swap) leaves ``out`` as it was."""
    out = Path(out)
    tmp = make_temp_dir(parent, f".{out.name}.tmp-")
    try:
        yield tmp
        if out.exists():
            old = make_temp_dir(parent, f".{out.name}.old-")
            os.replace(out, old / "d")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Write records atomically, one JSON object per line."""
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))


def append_jsonl(path: Path, *records: dict) -> None:
    """Append records and flush them to disk (used for logs that must survive a kill)."""
    with open(path, "a", encoding="utf-8", newline="\n") as f:
        f.write("".join(dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def _not_utf8(path: Path, raw: bytes, e: UnicodeDecodeError, first_line: int = 1) -> PbbError:
    """``path:line: not UTF-8 (byte 0x.. at column ..)`` for a decoding error in ``raw``, whose
    first line is line ``first_line`` of the file."""
    lineno = raw.count(b"\n", 0, e.start) + first_line
    column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
    return PbbError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {column})")


def read_text(path: Path, what: str = "file") -> str:
    """A whole text file, UTF-8; a missing file or undecodable bytes is one ``path:line`` error
    (every reader of users' files goes through here, so none shows a ``UnicodeDecodeError``)."""
    path = Path(path)
    if not path.is_file():
        raise PbbError(f"{path}: {what} not found" + (" (a folder is there)" if path.is_dir()
                                                       else ""))
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(path, raw, e) from None


def jsonl_lines(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(line number, object, None)``, or ``(line number, None, problem)`` for a line that is not
    a JSON object, for every non-empty line: readers decide whether a bad line is fatal.
    Bytes that are not UTF-8 are fatal (``path:line: not UTF-8``)."""
    path = Path(path)
    if not path.is_file():
        raise PbbError(f"{path}: file not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, raw, e, lineno) from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, None, f"invalid JSON ({e.msg} at column {e.colno})"
                continue
            if not isinstance(rec, dict):
                yield lineno, None, f"expected a JSON object, got {type(rec).__name__}"
                continue
            yield lineno, rec, None


def iter_jsonl(path: Path, required: Iterable[str] = ()) -> Iterator[dict]:
    """Yield the records of a JSONL file; a bad line raises ``PbbError('path:line: ...')``."""
    required = tuple(required)
    for lineno, rec, problem in jsonl_lines(path):
        if problem is not None:
            raise PbbError(f"{path}:{lineno}: {problem}")
        missing = [k for k in required if k not in rec]
        if missing:
            raise PbbError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
        yield rec


def read_jsonl(path: Path, required: Iterable[str] = ()) -> list[dict]:
    return list(iter_jsonl(path, required))


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise PbbError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def cut_torn_tail(path: Path) -> int:
    """Cut an append-only file back to the end of its last complete line; return the bytes cut.

    Every record pbb appends ends with ``\\n`` and is written in one call, and no record holds a
    raw newline (JSON escapes it), so what a kill can leave is exactly the bytes after the last
    ``\\n``: half a record, maybe half a UTF-8 character. Those are cut before anything is
    appended again (otherwise the next record would be glued to them). A complete line that is
    not a valid record is left in place for the reader to report as ``path:line``: it is not
    what a kill leaves. A missing file, or one that ends with ``\\n``, is not touched (0).
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        # look back block by block for the last newline (a log can be large)
        end, block = size, 1 << 16
        keep = 0
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            at = chunk.rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        if keep == size:
            return 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def repair_jsonl(path: Path) -> int:
    """Make an append-only JSONL file (``metrics.jsonl``, ``rollouts.jsonl``, partial samples)
    safe to read and append to after a kill: a torn last line is cut (see :func:`cut_torn_tail`)
    and the number of bytes dropped returned; a bad line before the last one stays an error of
    :func:`iter_jsonl` naming ``path:line``."""
    return cut_torn_tail(path)


def torn_tail_note(path: Path, dropped: int) -> str:
    """What a caller logs when :func:`repair_jsonl` / :func:`cut_torn_tail` cut something."""
    return f"{Path(path).name}: cut a torn last line ({dropped} bytes) from an interrupted run"
