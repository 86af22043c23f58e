"""The claims' finished runs, kept beside their table: ``<doc stem>-runs/<claim>.tar.gz``.

A claims table says that every figure recomputes from the runs' ``samples.jsonl``, but the runs
live in ``runs/claims``, which a fresh clone does not have: the claim could not be checked, and a
claim whose sweep takes longer than one sitting (the ordering claim, 5 seeds of two curricula:
hours on 2 cores) could only be measured by a machine that keeps its ``runs/`` all along. So
:func:`pack` keeps, per claim, what the table is computed from: the sweep's record and, for each
finished point, its config, summary, curricula, data set and samples (no weights, no stages, no
plots; some hundred kB compressed a point), and the sweep's ``jobs.json`` where it ran its points
as jobs (their spans: the claim's wall clock). ``pbb claims`` restores an archive where the claim's
sweep folder is missing (:func:`unpack`), and the finished points that a sweep folder here has
no folder of (:func:`fill`; its record grown first where the claim's config gained points since
it ran here), so that on a fresh clone ``pbb claims --no-run``
rewrites the same table from the same samples, and ``pbb claims`` runs only the points no
machine has finished yet; it packs a claim's sweep each time one of its points finishes (a
machine lost mid-claim, ``runs/`` and all, keeps them), and every claim's when its sweeps end or
are stopped (a run killed outright leaves its points in ``runs/``: the next ``pbb claims`` packs
them).

The archive is deterministic (sorted members, no times, owners or modes of this machine), and
one that holds the same files is not rewritten. A pack never loses a finished point of the same
plan: points the archive holds and this machine's sweep has not finished are kept where the
archive's sweep record (base config and points) is the sweep's, or one it grew from (more
seeds); a sweep of another plan replaces the archive. ``pbb claims`` restores and packs only
sweeps of each claim's plan as it is now (its config, ``--set``, ``--smoke``): an archive of an
older plan is not restored, and runs of an older plan left in ``runs/`` do not replace the
archive of the current one.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from pbb.errors import PbbError
from pbb.experiments.sweep import of_plan, renamed, started
from pbb.folders import MARKER
from pbb.jsonio import atomic_write_bytes, atomic_write_json, directory_in_place
from pbb.records import SweepRecord, check
from pbb.store import (
    CONFIG,
    CURRICULA,
    DATA,
    EVAL,
    JOBS,
    LOCK,
    LOCK_OWNER,
    SAMPLES,
    SUMMARY,
    SWEEP,
    folder_lock,
    parse_jobs,
    read_jobs,
)

#: a point's files that the table needs, besides its data set and samples
_POINT_FILES = (MARKER, CONFIG, SUMMARY, CURRICULA)


class GrownElsewhere(PbbError):
    """The archive holds a plan grown from the sweep being packed (points finished elsewhere
    that the sweep here lacks): not replaced by the sweep's fewer points."""


class Packed(NamedTuple):
    """What :func:`pack` did: how many finished points the archive holds, and whether it wrote
    the archive (False where it held these files already)."""

    points: int
    wrote: bool


class Archive(NamedTuple):
    """An archive as :func:`read` found it: where it is, its sweep record, its files."""

    path: Path
    record: dict
    files: dict[str, bytes]


def archive_dir(doc: Path) -> Path:
    """Where the archives of the table ``doc`` are: ``docs/claims.md`` -> ``docs/claims-runs``."""
    return Path(doc).with_name(Path(doc).stem + "-runs")


def archive_path(doc: Path, claim: str) -> Path:
    return archive_dir(doc) / f"{claim}.tar.gz"


def _point_files(run: Path) -> list[Path]:
    """A finished point's files to keep (relative to its run directory)."""
    keep = [Path(name) for name in _POINT_FILES if (run / name).is_file()]
    if (run / DATA).is_dir():
        keep += sorted(p.relative_to(run) for p in (run / DATA).rglob("*")
                       if p.is_file() and p.name not in (LOCK, LOCK_OWNER))
    keep += sorted(p.relative_to(run) for p in (run / EVAL).glob(f"*/*/{SAMPLES}"))
    return keep


def record_of(sweep_dir: Path) -> dict | None:
    """The sweep's record (``sweep.json``), or None where there is none."""
    path = Path(sweep_dir) / SWEEP
    if not path.is_file():
        return None
    try:
        return _checked_record(path.read_bytes(), path)
    except OSError as e:
        raise PbbError(f"{path}: cannot read it ({e.strerror or e})") from None


def _checked_record(raw: bytes, where: Path) -> dict:
    """A ``sweep.json``'s bytes as a :class:`pbb.records.SweepRecord`, the check the sweep
    machinery makes of its own record."""
    try:
        record = json.loads(raw)
    except ValueError:
        raise PbbError(f"{where}: not a sweep record (not JSON)") from None
    return check(SweepRecord, record, str(where))


def _local(sweep_dir: Path, record: dict) -> dict[str, dict[str, bytes]]:
    """Each finished point's files (point dir -> name -> bytes)."""
    points = {}
    for p in record["points"]:
        run = sweep_dir / p["dir"]
        if (run / SUMMARY).is_file():
            points[p["dir"]] = {(PurePosixPath(p["dir"]) / f.as_posix()).as_posix():
                                (run / f).read_bytes() for f in _point_files(run)}
    return points


def read(archive: Path) -> Archive:
    """An archive's sweep record and files (name -> bytes), checked: the whole gzip stream (its
    CRC too: a tar reader stops before it), relative names inside it, plain files, a record."""
    try:
        raw = gzip.decompress(Path(archive).read_bytes())
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            files = {}
            for m in tar.getmembers():
                parts = PurePosixPath(m.name).parts
                if not m.isfile() or not parts or m.name.startswith("/") or ".." in parts:
                    raise PbbError(f"{archive}: {m.name!r} is not a file a claims archive holds")
                files[m.name] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise PbbError(f"{archive}: not a readable claims archive ({e})") from None
    if SWEEP not in files:
        raise PbbError(f"{archive}: no {SWEEP} in it; not a claims archive")
    return Archive(Path(archive), _checked_record(files[SWEEP], Path(archive)), files)


def point_files(archive: Archive) -> dict[str, dict[str, bytes]]:
    """Each finished point's files in the archive (``runs/<point>`` -> name -> bytes): the
    points of its record that have a summary."""
    out = {}
    for p in archive.record["points"]:
        mine = {k: v for k, v in archive.files.items() if k.startswith(p["dir"] + "/")}
        if f"{p['dir']}/{SUMMARY}" in mine:
            out[p["dir"]] = mine
    return out


def finished(archive: Archive) -> frozenset[str]:
    """The folders (``runs/<point>``) of the archive's finished points."""
    return frozenset(point_files(archive))


def _tar_gz(files: dict[str, bytes]) -> bytes:
    """``files`` as a tar.gz whose bytes depend on nothing but the files (and zlib's build)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def pack(sweep_dir: Path, archive: Path) -> Packed | None:
    """Write the archive of the sweep in ``sweep_dir``: its finished points, and those of the
    archive that it lacks where the archive's plan is its own or one it grew from; what it did
    (:class:`Packed`), or None where there is no sweep or no finished point to pack. An archive
    that already holds these files is not rewritten (whatever zlib compressed it): a caller that
    writes the table anew after each new archive writes it only when one changed."""
    sweep_dir, archive = Path(sweep_dir), Path(archive)
    record = record_of(sweep_dir)
    if record is None:
        return None
    points = here = _local(sweep_dir, record)
    old = read(archive) if archive.is_file() else None
    archived = point_files(old) if old is not None else {}
    kept = old is not None and of_plan(old.record, record, archived)
    if kept:
        points = {**_named_alike(archived, old.record, record), **points}
    if not points:
        return None
    if old is not None and not kept and of_plan(record, old.record, set(here)):
        # the archive's plan grew from this one (more seeds, finished elsewhere): packing this
        # sweep alone would drop the points it lacks, and the next run would train them again
        raise GrownElsewhere(
            f"{archive}: holds {len(archived)} finished point(s) of a plan grown from the sweep "
            f"in {sweep_dir}; not replaced by its {len(here)}: move {sweep_dir} aside (pbb "
            "claims restores the archive's points there) or the archive (to keep this sweep's "
            "plan alone)")
    files = {SWEEP: (sweep_dir / SWEEP).read_bytes()}
    if (sweep_dir / MARKER).is_file():
        files[MARKER] = (sweep_dir / MARKER).read_bytes()
    # each packed point's job (the claim's wall clock where they ran at once), from where its
    # files come from: this sweep's jobs.json, or the archive's for the points kept from it
    jobs = _jobs_of(record, read_jobs(sweep_dir / JOBS), set(here))
    if kept:
        jobs = {**_jobs_of(old.record, _archived_jobs(old), set(points) - set(here)), **jobs}
    if jobs:
        files[JOBS] = (json.dumps(jobs, ensure_ascii=False, indent=2, sort_keys=True)
                       + "\n").encode()
    for point in points.values():
        files.update(point)
    wrote = old is None or old.files != files
    if wrote:
        atomic_write_bytes(archive, _tar_gz(files))
    return Packed(len(points), wrote)


def _archived_jobs(archive: Archive) -> dict[str, dict]:
    """The jobs record an archive carries (empty where it has none)."""
    return parse_jobs(archive.files.get(JOBS, b""))


def _jobs_of(record: dict, jobs: dict[str, dict], dirs: set[str]) -> dict[str, dict]:
    """The records in a sweep's jobs record ``jobs`` (the sweep's ``record``) of the points whose
    folders are ``dirs``."""
    names = {p["name"] for p in record["points"] if p["dir"] in dirs}
    return {k: v for k, v in jobs.items() if k in names}


def fill(archive: Archive, sweep_dir: Path, plan: dict | None = None) -> int:
    """Restore into the existing sweep ``sweep_dir`` the archive's finished points whose folders
    it does not have (:func:`lacking`: points finished on another machine are not run again
    here); where the sweep here is of an older plan that ``plan`` grew from, its record first
    takes ``plan``'s points, as its next run would (else it would not see them); taken under the
    sweep's lock, so not while a process works there, and what it restores is decided again
    under it. Returns how many points it restored."""
    sweep_dir = Path(sweep_dir)
    if not lacking(archive, sweep_dir, plan):
        return 0
    with folder_lock(sweep_dir, "sweep"):
        here, target = _target(archive, sweep_dir, plan)
        missing = _missing(archive, sweep_dir, target)
        if not missing:
            return 0
        if target != here:  # first: a fill stopped half-way goes on as one of the same plan
            atomic_write_json(sweep_dir / SWEEP, target)
        for d, point in missing.items():
            (sweep_dir / d).parent.mkdir(parents=True, exist_ok=True)  # no point begun here yet
            _restore(archive, sweep_dir / d,
                     {PurePosixPath(n).relative_to(d).as_posix(): f for n, f in point.items()})
        # their jobs, beside those of the sweep's own
        jobs = _jobs_of(archive.record, _archived_jobs(archive), set(missing))
        if jobs:
            atomic_write_json(sweep_dir / JOBS, {**jobs, **read_jobs(sweep_dir / JOBS)})
    return len(missing)


def lacking(archive: Archive, sweep_dir: Path, plan: dict | None = None
            ) -> dict[str, dict[str, bytes]]:
    """The archive's finished points (point dir -> name -> bytes) that the sweep ``sweep_dir``
    has no folder of, where the archive's plan is the sweep's or one it grew from, or where the
    archive is of ``plan`` (the claim's plan now) and the sweep here of an older one that
    ``plan`` grew from (a config given more points since this folder's sweep ran); none where
    the folder has no sweep record."""
    return _missing(archive, Path(sweep_dir), _target(archive, sweep_dir, plan)[1])


def _missing(archive: Archive, sweep_dir: Path, target: dict | None
             ) -> dict[str, dict[str, bytes]]:
    """The archive's finished points of the sweep record ``target`` that ``sweep_dir`` has no
    folder of (none without a target)."""
    if target is None:
        return {}
    archived = point_files(archive)
    return {d: f for d, f in _named_alike(archived, archive.record, target).items()
            if not (sweep_dir / d).exists()}


def _target(archive: Archive, sweep_dir: Path, plan: dict | None) -> tuple[dict | None,
                                                                          dict | None]:
    """The sweep record of ``sweep_dir`` (None where it has none), and the record whose points
    the archive may fill it with: its own, or ``plan`` with its points named as the sweep here
    names them (what its next run records), where :func:`lacking` says and every finished
    point of the archive keeps its folder there (else the next pack, of the plan now, would
    drop the ones named otherwise); None where neither."""
    here = record_of(sweep_dir)
    if here is None:
        return None, None
    archived = point_files(archive)
    if of_plan(archive.record, here, archived):
        return here, here
    if plan is None or not of_plan(archive.record, plan, archived) \
            or not of_plan(here, plan, started(Path(sweep_dir), here)):
        return here, None
    grown = renamed(plan, here)
    dirs = [p["dir"] for p in grown["points"]]
    if len(set(dirs)) != len(dirs) \
            or len(_named_alike(archived, archive.record, grown)) != len(archived):
        return here, None
    return here, grown


def _named_alike(points: dict[str, dict], record: dict, plan: dict) -> dict[str, dict]:
    """The points (folder -> files) of the sweep record ``record`` that the sweep record
    ``plan`` has under the same name and folder: where the two were planned apart (another
    machine's sweep grown, this one planned grown from the start), a point's folder may name
    another point there, and its runs stay out (run anew) rather than be taken as that one's."""
    mine = {p["dir"]: p for p in record["points"]}
    return {d: f for d, f in points.items() if mine.get(d) in plan["points"]}


def unpack(archive: Archive, sweep_dir: Path) -> int:
    """Restore the archive into ``sweep_dir``, which must not exist (a sweep folder this machine
    has is never overwritten); all of it or nothing. Returns how many finished points it held."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.exists():
        raise PbbError(f"{sweep_dir}: exists; an archive is restored only where a sweep is not")
    _restore(archive, sweep_dir, archive.files)
    return len(point_files(archive))


def _restore(archive: Archive, folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (names relative to ``folder``) as the new folder ``folder``, all or
    nothing."""
    try:
        with directory_in_place(folder, folder.parent) as tmp:
            for name, data in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(data)
    except OSError as e:
        raise PbbError(f"{archive.path}: cannot restore {folder} from it ({e.strerror or e})") \
            from None
