"""The claims' runs kept beside their table (``pbb.experiments.claims_archive``): what an
archive holds and leaves out, that its bytes depend on the runs alone, that a pack keeps the
finished points of the same plan that only the archive has, and that a broken or hostile
archive is one line."""

import io
import json
import shutil
import tarfile
import time

import pytest

from pbb.errors import PbbError
from pbb.experiments import claims_archive as archive


def _sweep(root, finished, lr=1e-4, points=("000_seed-0", "001_seed-1")):
    """A sweep folder as pbb leaves it: the record, and run directories of which ``finished``
    have a summary; each with what an archive leaves out (stages, a lock, a plot, partials)."""
    (root / "stages" / "stage1-000000000000").mkdir(parents=True)
    (root / "stages" / "stage1-000000000000" / "done.json").write_text("{}")
    seeds = [int(p.split("-")[-1]) for p in points]
    record = {"name": "claim_x", "analysis": {},
              "base": {"train": {"learning_rate": lr}, "sweep": {"grid": {"seed": seeds}}},
              "points": [{"name": p, "overrides": {"seed": s}, "dir": f"runs/{p}"}
                         for p, s in zip(points, seeds)]}
    (root / "sweep.json").write_text(json.dumps(record))
    (root / ".pbb-folder.json").write_text('{"kind": "sweep"}')
    for p in points:
        run = root / "runs" / p
        (run / "eval" / "proactive" / "cot").mkdir(parents=True)
        (run / "data").mkdir()
        (run / "config.yaml").write_text(f"seed: {p}\n")
        (run / "data" / "behaviours.jsonl").write_text(f'{{"id": "{p}"}}\n')
        (run / "data" / ".lock").write_text("")
        (run / ".lock").write_text("")
        (run / "accuracy.png").write_bytes(b"png")
        (run / "eval" / "proactive" / "cot" / "samples.partial.jsonl").write_text("{}\n")
        if p in finished:
            (run / "eval" / "proactive" / "cot" / "samples.jsonl").write_text(f'{{"p": "{p}"}}\n')
            (run / "summary.json").write_text("{}")
    return root


def _names(path):
    with tarfile.open(path) as tar:
        return sorted(tar.getnames())


def test_an_archive_holds_the_finished_points_files_and_nothing_else(tmp_path):
    sweep = _sweep(tmp_path / "s", finished={"000_seed-0"})
    assert archive.pack(sweep, tmp_path / "a.tar.gz").points == 1
    assert _names(tmp_path / "a.tar.gz") == [
        ".pbb-folder.json", "runs/000_seed-0/config.yaml",
        "runs/000_seed-0/data/behaviours.jsonl",
        "runs/000_seed-0/eval/proactive/cot/samples.jsonl", "runs/000_seed-0/summary.json",
        "sweep.json"]
    # restored where no sweep is: the same files, byte for byte
    assert archive.unpack(archive.read(tmp_path / "a.tar.gz"), tmp_path / "r") == 1
    for name in _names(tmp_path / "a.tar.gz"):
        assert (tmp_path / "r" / name).read_bytes() == (sweep / name).read_bytes(), name
    with pytest.raises(PbbError, match="exists"):  # a sweep this machine has is not overwritten
        archive.unpack(archive.read(tmp_path / "a.tar.gz"), sweep)


def test_the_same_runs_give_the_same_bytes_and_leave_the_archive_untouched(tmp_path):
    a = _sweep(tmp_path / "a", finished={"000_seed-0", "001_seed-1"})
    assert archive.pack(a, tmp_path / "a.tar.gz") == (2, True)
    time.sleep(1.1)  # other file times, another folder: the bytes must not see them
    b = _sweep(tmp_path / "b", finished={"000_seed-0", "001_seed-1"})
    archive.pack(b, tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    written = (tmp_path / "a.tar.gz").stat().st_mtime_ns
    assert archive.pack(b, tmp_path / "a.tar.gz") == (2, False)  # says so: no table to write
    assert (tmp_path / "a.tar.gz").stat().st_mtime_ns == written


def test_a_pack_keeps_the_archives_points_of_the_same_plan_only(tmp_path):
    # seed 1 finished on one machine, seed 0 on another: the archive gathers both
    one = _sweep(tmp_path / "one", finished={"001_seed-1"})
    archive.pack(one, tmp_path / "a.tar.gz")
    other = _sweep(tmp_path / "other", finished={"000_seed-0"})
    assert archive.pack(other, tmp_path / "a.tar.gz").points == 2
    names = _names(tmp_path / "a.tar.gz")
    assert "runs/000_seed-0/summary.json" in names and "runs/001_seed-1/summary.json" in names
    # the plan grown by a seed (a claim whose seeds disagree): the archive's points are its too
    grown = _sweep(tmp_path / "grown", finished={"002_seed-2"},
                   points=("000_seed-0", "001_seed-1", "002_seed-2"))
    assert archive.pack(grown, tmp_path / "a.tar.gz").points == 3
    # a sweep of another plan (its config changed): the old points are not its, so they go
    changed = _sweep(tmp_path / "changed", finished={"000_seed-0"}, lr=3e-4)
    assert archive.pack(changed, tmp_path / "a.tar.gz").points == 1
    assert "runs/001_seed-1/summary.json" not in _names(tmp_path / "a.tar.gz")


def test_a_sweep_of_an_older_plan_does_not_replace_an_archive_grown_from_it(tmp_path):
    # the claim grew to three seeds, all finished elsewhere; a folder here still holds the
    # two-seed sweep (never filled): its pack would keep two points and lose seed 2
    grown = _sweep(tmp_path / "grown", finished={"000_seed-0", "001_seed-1", "002_seed-2"},
                   points=("000_seed-0", "001_seed-1", "002_seed-2"))
    archive.pack(grown, tmp_path / "a.tar.gz")
    before = (tmp_path / "a.tar.gz").read_bytes()
    older = _sweep(tmp_path / "older", finished={"000_seed-0", "001_seed-1"})
    with pytest.raises(PbbError, match="3 finished point.* of a plan grown from .*older.* its 2"):
        archive.pack(older, tmp_path / "a.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == before


def test_a_pack_keeps_the_archives_points_where_only_unfinished_ones_were_planned_anew(tmp_path):
    # seed 0 finished, seed 1's point never did; the plan since puts seed 1 in another point (a
    # claim's curricula split): the archive's finished point is the new plan's too
    archive.pack(_sweep(tmp_path / "one", finished={"000_seed-0"}), tmp_path / "a.tar.gz")
    split = _sweep(tmp_path / "split", finished={"002_seed-1"}, points=("000_seed-0", "002_seed-1"))
    shutil.rmtree(split / "runs" / "000_seed-0")  # not started on this machine
    assert archive.pack(split, tmp_path / "a.tar.gz").points == 2
    kept = archive.read(tmp_path / "a.tar.gz")
    assert archive.finished(kept) == {"runs/000_seed-0", "runs/002_seed-1"}
    assert [p["name"] for p in kept.record["points"]] == ["000_seed-0", "002_seed-1"]
    assert archive.fill(kept, split) == 1 and (split / "runs/000_seed-0/summary.json").is_file()


def test_a_point_named_otherwise_here_takes_no_archived_runs(tmp_path):
    # the archive's seed 1 is 001_seed-1; a sweep planned apart (grown from the start) calls
    # seed 1 005_seed-1: the same plan, but the archive's folder is no point of that sweep, so
    # nothing is filled (no folder beside its points) and the sweep's pack keeps its own points
    archive.pack(_sweep(tmp_path / "there", finished={"000_seed-0", "001_seed-1"}),
                 tmp_path / "a.tar.gz")
    here = _sweep(tmp_path / "here", finished={"005_seed-1"}, points=("000_seed-0", "005_seed-1"))
    shutil.rmtree(here / "runs" / "000_seed-0")
    kept = archive.read(tmp_path / "a.tar.gz")
    assert archive.lacking(kept, here).keys() == {"runs/000_seed-0"}
    assert archive.fill(kept, here) == 1 and not (here / "runs" / "001_seed-1").exists()
    assert archive.pack(here, tmp_path / "a.tar.gz").points == 2
    assert archive.finished(archive.read(tmp_path / "a.tar.gz")) == {"runs/000_seed-0",
                                                                    "runs/005_seed-1"}


def test_the_sweeps_jobs_record_travels_with_its_points(tmp_path):
    # the jobs' spans are the claim's wall clock where its points ran at once: each packed
    # point's job travels with its files (packed, restored, kept by a pack of the same plan,
    # filled into a sweep here), and no other point's
    def job(a, b):
        return {"started": a, "ended": b, "exit_code": 0}

    ran = _sweep(tmp_path / "ran", finished={"000_seed-0"})
    (ran / "jobs.json").write_text(json.dumps({"000_seed-0": job(1, 5), "001_seed-1": job(1, 9)}))
    archive.pack(ran, tmp_path / "a.tar.gz")
    assert json.loads(archive.read(tmp_path / "a.tar.gz").files["jobs.json"]) == {
        "000_seed-0": job(1, 5)}  # seed 1 unfinished there: not its job
    archive.unpack(archive.read(tmp_path / "a.tar.gz"), tmp_path / "r")
    assert json.loads((tmp_path / "r" / "jobs.json").read_text()) == {"000_seed-0": job(1, 5)}

    here = _sweep(tmp_path / "here", finished={"001_seed-1"})
    (here / "jobs.json").write_text(json.dumps({"001_seed-1": job(2, 4)}))
    assert archive.pack(here, tmp_path / "a.tar.gz").points == 2
    assert json.loads(archive.read(tmp_path / "a.tar.gz").files["jobs.json"]) == {
        "000_seed-0": job(1, 5), "001_seed-1": job(2, 4)}

    lacking = _sweep(tmp_path / "lacking", finished={"001_seed-1"})
    (lacking / "jobs.json").write_text(json.dumps({"001_seed-1": job(7, 8)}))
    shutil.rmtree(lacking / "runs" / "000_seed-0")
    assert archive.fill(archive.read(tmp_path / "a.tar.gz"), lacking) == 1
    assert json.loads((lacking / "jobs.json").read_text()) == {
        "000_seed-0": job(1, 5), "001_seed-1": job(7, 8)}  # its own job kept

    other = _sweep(tmp_path / "other", finished={"000_seed-0"}, lr=3e-4)  # another plan
    archive.pack(other, tmp_path / "a.tar.gz")
    assert "jobs.json" not in _names(tmp_path / "a.tar.gz")


def test_a_sweep_here_gets_the_points_finished_elsewhere_that_it_lacks(tmp_path):
    import shutil

    from pbb.store import folder_lock

    archive.pack(_sweep(tmp_path / "elsewhere", finished={"000_seed-0", "001_seed-1"}),
                 tmp_path / "a.tar.gz")
    here = _sweep(tmp_path / "here", finished=set())
    shutil.rmtree(here / "runs" / "001_seed-1")  # never started here
    started = (here / "runs" / "000_seed-0" / "config.yaml").read_bytes()
    with folder_lock(here, "sweep"), pytest.raises(PbbError, match="another pbb process"):
        archive.fill(archive.read(tmp_path / "a.tar.gz"), here)  # not while a process works there
    assert archive.fill(archive.read(tmp_path / "a.tar.gz"), here) == 1
    assert (here / "runs" / "001_seed-1" / "eval" / "proactive" / "cot" /
            "samples.jsonl").read_text() == '{"p": "001_seed-1"}\n'
    # a point this machine started is its own: left as it is
    assert not (here / "runs" / "000_seed-0" / "summary.json").exists()
    assert (here / "runs" / "000_seed-0" / "config.yaml").read_bytes() == started
    # another plan's points are not this sweep's
    other = _sweep(tmp_path / "other", finished=set(), lr=3e-4)
    shutil.rmtree(other / "runs" / "001_seed-1")
    assert archive.fill(archive.read(tmp_path / "a.tar.gz"), other) == 0
    assert not (other / "runs" / "001_seed-1").exists()
    # nor are they a folder's whose sweep never wrote its record (stopped as it began)
    begun = tmp_path / "begun"
    begun.mkdir()
    assert archive.lacking(archive.read(tmp_path / "a.tar.gz"), begun) == {}
    assert archive.fill(archive.read(tmp_path / "a.tar.gz"), begun) == 0
    assert list(begun.iterdir()) == []



def test_a_sweep_of_an_older_plan_takes_the_points_its_claims_plan_grew_by(tmp_path):
    # the claim's config gained a seed since this folder's sweep ran; the archive (of the plan
    # now) holds that seed finished elsewhere: it is filled, and the sweep's record grows to the
    # plan now (what its next run records), else the table and the run would not see it
    there = _sweep(tmp_path / "there", finished={"000_seed-0", "001_seed-1", "002_seed-2"},
                   points=("000_seed-0", "001_seed-1", "002_seed-2"))
    archive.pack(there, tmp_path / "a.tar.gz")
    kept, plan = archive.read(tmp_path / "a.tar.gz"), json.loads((there / "sweep.json").read_text())
    here = _sweep(tmp_path / "here", finished={"000_seed-0"})
    older = (here / "sweep.json").read_bytes()
    assert archive.fill(kept, here) == 0  # without the plan now: the archive's is not this one's
    other = {**plan, "base": {**plan["base"], "train": {"learning_rate": 3e-4}}}
    assert archive.fill(kept, here, other) == 0  # the config changed otherwise: not its points
    assert (here / "sweep.json").read_bytes() == older
    stale = _sweep(tmp_path / "stale", finished={"002_seed-2"}, lr=3e-4,
                   points=("000_seed-0", "001_seed-1", "002_seed-2"))
    archive.pack(stale, tmp_path / "stale.tar.gz")  # an archive of another plan than the one now
    assert archive.lacking(archive.read(tmp_path / "stale.tar.gz"), here, plan) == {}
    assert archive.lacking(kept, here, plan).keys() == {"runs/002_seed-2"}
    assert archive.fill(kept, here, plan) == 1
    assert json.loads((here / "sweep.json").read_text()) == plan
    assert (here / "runs" / "002_seed-2" / "summary.json").is_file()
    assert not (here / "runs" / "001_seed-1" / "summary.json").exists()  # started here: its own
    assert archive.fill(kept, here, plan) == 0  # done: the same plan, nothing lacking
    # then packed as a sweep of the plan now: the archive keeps every finished point
    assert archive.pack(here, tmp_path / "a.tar.gz").points == 3
    # a sweep here that named seed 2 otherwise: its plan grown would leave the archive's seed 2
    # in a folder of no point there, which the next pack drops; so nothing changes
    apart = _sweep(tmp_path / "apart", finished=set(), points=("000_seed-0", "001_seed-2"))
    before = (apart / "sweep.json").read_bytes()
    assert archive.fill(kept, apart, plan) == 0 and (apart / "sweep.json").read_bytes() == before
    # a sweep whose record was written before any point began (no runs/ folder): filled
    fresh = _sweep(tmp_path / "fresh", finished=set())
    shutil.rmtree(fresh / "runs")
    assert archive.fill(kept, fresh, plan) == 3
    # a plan whose new point would take a folder another point has: nothing is filled
    clash = {**plan, "points": [*plan["points"], {"name": "001_seed-1", "overrides": {"seed": 5},
                                                  "dir": "runs/001_seed-1"}]}
    assert archive.lacking(kept, _sweep(tmp_path / "c", finished=set()), clash) == {}


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _flipped(path):
    """A good archive with one bit flipped in its compressed middle (a bad copy, a bad disk)."""
    sweep = _sweep(path.parent / "s", finished={"000_seed-0", "001_seed-1"})
    archive.pack(sweep, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_bytes(b"not gzip at all"), "not a readable claims archive"),
    (_flipped, "not a readable claims archive"),
    (lambda p: _tar(p, {"sweep.json": b"{not json"}), "not a sweep record"),
    (lambda p: _tar(p, {"sweep.json": b'{"points": [{"dir": 3}]}'}),
     "SweepRecord record, field points.0"),
    (lambda p: _tar(p, {"sweep.json": b"{}", "../outside.txt": b"x"}),
     "'../outside.txt' is not a file a claims archive holds"),
    (lambda p: _tar(p, {"runs/x/summary.json": b"{}"}), "no sweep.json in it"),
])
def test_a_broken_or_hostile_archive_is_one_line_and_restores_nothing(tmp_path, make, message):
    make(tmp_path / "a.tar.gz")
    with pytest.raises(PbbError, match=message) as e:
        archive.unpack(archive.read(tmp_path / "a.tar.gz"), tmp_path / "sweep")
    assert str(tmp_path / "a.tar.gz") in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "outside.txt").exists()
