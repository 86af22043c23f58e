"""scripts/offline_bundle.sh and scripts/offline_install.sh, offline: the model cut into parts
comes back byte for byte however many transfers bring its parts, a damaged part is refused by
its md5 (no file left to load), and a wheel of the bundle is importable from the printed
PYTHONPATH. (Downloading wheels needs a registry: not tested here.)"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

BUNDLE = Path("scripts/offline_bundle.sh").resolve()
INSTALL = Path("scripts/offline_install.sh").resolve()


def bundle(tmp_path: Path, model: bytes, part: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(model)
    env = {**os.environ, "PBB_SMOLLM2_GGUF": str(gguf), "PBB_BUNDLE_PART": part,
           "PBB_PYTHON": sys.executable}
    subprocess.run(["bash", str(BUNDLE), str(tmp_path / "bundle"), "none"], check=True,
                   env=env, capture_output=True, text=True, timeout=120)
    return tmp_path / "bundle"


def install(bundle_dir: Path, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), str(bundle_dir), str(target)],
                          env={**os.environ, "PBB_PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=120)


def exported(stdout: str, name: str, before: str = "") -> str:
    """``name`` after the printed lines are evaluated by bash, as the script's usage says."""
    r = subprocess.run(["bash", "-c", f'{name}="$2"; eval "$1"; printf %s "${name}"', "-",
                        stdout, before], capture_output=True, text=True, timeout=60, check=True)
    return r.stdout


def transfer(src: Path, names: list[str], dest: Path) -> Path:
    """One transfer: the manifest and some of the parts, in a bundle folder of its own."""
    (dest / "model").mkdir(parents=True)
    for name in ["MANIFEST", *names]:
        shutil.copy(src / "model" / name, dest / "model" / name)
    return dest


def test_parts_in_two_transfers_join_to_the_model(tmp_path):
    model = os.urandom(1000)
    src = bundle(tmp_path, model, "300")
    manifest = (src / "model" / "MANIFEST").read_text().split("\n")
    parts = [line.split()[0] for line in manifest[1:] if line]
    assert len(parts) == 4 and manifest[0].startswith("model.gguf ")
    target = tmp_path / "target"
    first = install(transfer(src, parts[:2], tmp_path / "t1"), target)
    assert first.returncode == 0 and "PBB_SMOLLM2_GGUF" not in first.stdout
    assert "2 part(s) still missing" in first.stderr and parts[3] in first.stderr
    second = install(transfer(src, parts[2:], tmp_path / "t2"), target)
    assert second.returncode == 0, second.stderr
    assert Path(exported(second.stdout, "PBB_SMOLLM2_GGUF")).read_bytes() == model


def test_a_damaged_part_is_named_and_removed_and_a_resent_one_joins(tmp_path):
    model = os.urandom(1000)
    src = bundle(tmp_path, model, "300")
    part = sorted((src / "model").glob("*.part-*"))[1]
    good = part.read_bytes()
    part.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped in transit
    target = tmp_path / "target"
    r = install(src, target)
    assert r.returncode == 1 and part.name in r.stderr and "damaged" in r.stderr
    assert "PBB_SMOLLM2_GGUF" not in r.stdout and not (target / "model" / "model.gguf").exists()
    assert not (target / "model" / part.name).exists()  # removed: the next transfer brings it
    part.write_bytes(good)
    again = install(transfer(src, [part.name], tmp_path / "resent"), target)
    assert again.returncode == 0, again.stderr
    assert Path(exported(again.stdout, "PBB_SMOLLM2_GGUF")).read_bytes() == model


def test_a_new_bundle_clears_the_parts_of_the_old_one(tmp_path):
    """Parts of an earlier bundle with the same file name are not taken for the new one's: its
    first transfer says what is still missing, and the joined file is the new model."""
    old = bundle(tmp_path / "old", os.urandom(1000), "300")
    target = tmp_path / "target"
    assert install(old, target).returncode == 0
    model = os.urandom(1000)
    new = bundle(tmp_path / "new", model, "300")
    parts = sorted(p.name for p in (new / "model").glob("*.part-*"))
    first = install(transfer(new, parts[:1], tmp_path / "t1"), target)
    assert first.returncode == 0 and "3 part(s) still missing" in first.stderr
    assert "PBB_SMOLLM2_GGUF" not in first.stdout
    second = install(transfer(new, parts[1:], tmp_path / "t2"), target)
    assert Path(exported(second.stdout, "PBB_SMOLLM2_GGUF")).read_bytes() == model


def test_a_bundled_wheel_is_importable_from_the_printed_path(tmp_path):
    wheels = tmp_path / "bundle" / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "pbbprobe-1.0-py3-none-any.whl", "w") as z:
        z.writestr("pbbprobe/__init__.py", "VALUE = 42\n")
        z.writestr("pbbprobe-1.0.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: pbbprobe\nVersion: 1.0\n")
        z.writestr("pbbprobe-1.0.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("pbbprobe-1.0.dist-info/RECORD", "")
    r = install(tmp_path / "bundle", tmp_path / "target")
    assert r.returncode == 0, r.stderr
    path = exported(r.stdout, "PYTHONPATH", before="/elsewhere")
    assert path.endswith(":/elsewhere")  # put before what was there, not over it
    marker = Path(path.split(":")[0]) / "pbbprobe" / "marker"
    marker.write_text("kept")
    assert install(tmp_path / "bundle", tmp_path / "target").returncode == 0
    assert marker.exists()  # the same wheels a second time: not installed again
    probe = subprocess.run([sys.executable, "-c", "import pbbprobe; print(pbbprobe.VALUE)"],
                           env={**os.environ, "PYTHONPATH": path}, capture_output=True,
                           text=True, timeout=60)
    assert probe.stdout.strip() == "42"
