"""Which folders pbb may write into, replace or delete: only its own, of the right kind.

Every folder pbb makes as a whole (a run, a sweep, a data set, an export, a scored run, the
folder of the claims' sweeps) carries a marker file, ``.pbb-folder.json`` = ``{"written_by":
"pbb", "kind": KIND}``, written before anything else in it. The rules, the same for every command:

* ``--out`` missing or empty: pbb makes it and marks it.
* ``--out`` holding a folder pbb marked as the same kind: runs and sweeps resume there (their
  own config check decides whether it is the same run); data sets, exports and scored runs are
  replaced only with ``--force``.
* anything else (a user's folder, a pbb folder of another kind): refused with one line, with or
  without ``--force``. pbb never deletes or overwrites a file it did not write.

Folders written before markers existed are recognised by what they hold (a data set's
``manifest.json``, a run's ``config.yaml``, an export's ``stages.json``, a sweep's ``sweep.json``)
so that earlier work still resumes; the marker is added when pbb next writes there. A folder
holding nothing but a stage store ``stages/`` with a stage in it (what ``pbb sweep
--stages-root DIR/stages`` makes of a new ``DIR``) is a claims folder: the claims share their
stages in the same place, so ``pbb claims --out DIR`` reuses the stages such a sweep trained.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pbb.errors import PbbError
from pbb.jsonio import atomic_write_json, read_json
from pbb.store import (
    CONFIG,
    LOCK,
    LOCK_OWNER,
    RUN_FILES,
    STAGES,
    SUMMARY,
    SWEEP,
    not_stage_folders,
)

MARKER = ".pbb-folder.json"
KINDS = ("run", "sweep", "data", "export", "score", "claims")
#: what a folder of each kind held before markers existed (all of these must be there)
_LEGACY = {"data": ("manifest.json", "behaviours.jsonl"), "export": ("stages.json",),
           "sweep": (SWEEP,), "run": (CONFIG,),
           "score": (CONFIG, SUMMARY)}


def mark(folder: Path, kind: str) -> None:
    """Mark ``folder`` as pbb's own folder of ``kind`` (deterministic bytes: no time, no host)."""
    assert kind in KINDS, kind
    atomic_write_json(Path(folder) / MARKER, {"written_by": "pbb", "kind": kind})


def kind_of(folder: Path) -> str | None:
    """The kind of pbb folder ``folder`` is, or None (not pbb's, or not there)."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        try:
            rec = read_json(folder / MARKER)
        except PbbError:
            return None
        kind = rec.get("kind") if isinstance(rec, dict) else None
        return kind if kind in KINDS else None
    for kind in ("data", "export", "sweep"):  # unambiguous by their files
        if all((folder / f).is_file() for f in _LEGACY[kind]):
            return kind
    if all((folder / f).is_file() for f in _LEGACY["score"]):
        summary = _json_or_none(folder / SUMMARY)
        if isinstance(summary, dict) and "scored_from" in summary:
            return "score"
    if (folder / CONFIG).is_file() and _only_run_files(folder):
        return "run"
    if _only_a_stage_store(folder):
        return "claims"
    return None


def _only_a_stage_store(folder: Path) -> bool:
    store = folder / STAGES
    if not store.is_dir():
        return False
    names = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    return names == [STAGES] and any(store.iterdir()) and not not_stage_folders(store)


def _json_or_none(path: Path):
    try:
        return read_json(path)
    except PbbError:
        return None


#: every name a run directory holds (:mod:`pbb.store`); an unmarked folder with anything else
#: in it is a user's folder
_RUN_FILES = RUN_FILES | {MARKER}


def _only_run_files(folder: Path) -> bool:
    return all(p.name in _RUN_FILES or p.name.startswith(".") for p in folder.iterdir())


def _holding(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"holds {shown}"


def _is_empty_dir(folder: Path) -> bool:
    """Empty, or holding only a folder lock (:func:`pbb.store.folder_lock`): a start that
    failed its checks after it took the lock leaves the lock file (filelock keeps it on Unix,
    and deleting it while another process waits on it would break the lock), and the corrected
    command must still find the folder empty."""
    return folder.is_dir() and all(p.name in (LOCK, LOCK_OWNER) for p in folder.iterdir())


def check_writable_parent(out: Path, option: str = "--out") -> Path:
    """The parent of ``out`` (given as ``option``), made if needed and probed for writing;
    returns it."""
    parent = Path(out).resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=parent, prefix=".pbb-write-test-").close()
    except OSError as e:
        raise PbbError(f"{option} {out}: cannot write there ({e.strerror or e})") from None
    return parent


def check_out(out: Path, kind: str, *, force: bool = False, replace: bool = True,
              write: bool = True) -> Path:
    """Check, before any work, that pbb may write a ``kind`` folder at ``out``; return its parent.

    ``replace``: the command writes the folder anew as a whole (data sets, exports, scored runs:
    an existing one of the same kind needs ``force``); otherwise it works inside an existing one
    (runs and sweeps resume). ``write``: also make the parent and probe it for writing (not for
    a plan, which writes nothing but must refuse what the command would refuse).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PbbError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and not _is_empty_dir(out):
        found = kind_of(out)
        if found is None:
            raise PbbError(f"--out {out}: not a folder pbb wrote (it {_holding(out)}); pbb writes "
                           f"only into an empty or new folder or its own {kind} folder, with or "
                           "without --force: choose another --out")
        if found != kind:
            raise PbbError(f"--out {out}: holds a pbb {found} folder, not a {kind} folder; "
                           "choose another --out")
        if replace and not force:
            raise PbbError(f"--out {out}: holds a {kind} folder already (use --force to replace it)")
    return check_writable_parent(out) if write else out.resolve().parent


def check_stage_store(folder: Path, write: bool = True) -> Path:
    """Check, before any work, that runs may share stages in ``folder`` (``--stages-root``, e.g.
    ``runs/claims/stages``): missing, or holding stage directories only. Every stage trained
    there adds a folder of weights to it, so a user's folder, or a run's or sweep's own folder
    given in place of its ``stages/``, is refused. ``write``: also make its parent and probe it
    for writing (not for a plan, which writes nothing). Returns ``folder``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PbbError(f"--stages-root {folder}: exists and is not a directory")
    if foreign := not_stage_folders(folder):
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        hint = (f" (a pbb {kind} folder: its stages are in {folder / STAGES})"
                if (kind := kind_of(folder)) in ("run", "sweep", "claims") else "")
        raise PbbError(f"--stages-root {folder}: holds {shown}, not stage folders only{hint}; "
                       "give a stage store (new, or a run's, sweep's or the claims' stages/)")
    if write and not folder.is_dir():
        check_writable_parent(folder, "--stages-root")
    elif write and not os.access(folder, os.W_OK | os.X_OK):  # no probe file: processes of one
        # launch check the store at once, and each would see the other's file as foreign
        raise PbbError(f"--stages-root {folder}: cannot write there (permission denied)")
    return folder
