"""A full disk or a read-only folder: one line naming the file and the OS's reason, exit status 1, and what
was written before stays (real main.py / inference_difface.py processes on a small tmpfs, mounted for the
test; skipped with the reason where mounting is not permitted). Root ignores file permissions, so the
read-only folder is the tmpfs remounted read-only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from proc_helpers import run_process
from tiny_setup import make_tiny_setup
from utils.image_io import list_images, read_image, write_image
from utils.run_checkpoints import read_training_state

TRAIN = [
    sys.executable,
    "main.py",
    "--cfg_path",
    "configs/training/tiny/swinir_tiny.yaml",
    "train.val_freq=100",
    "train.save_freq=2",
    "train.log_sample_paths=false",
]
# a checkpoint of that tiny run is about 1.5 MB: one fits on a 2 MiB disk, two do not


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size, read_only=False)``: a fresh tmpfs of ``size`` (mount syntax, e.g. "2m")."""
    mounts = []

    def mount(size: str, read_only: bool = False, folders=()) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command: cannot make a small tmpfs")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs (needs root and mount permission): {proc.stderr.strip()}")
        mounts.append(point)
        for folder in folders:
            (point / folder).mkdir(parents=True)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


def error_line(proc, prefix: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.usefixtures("faces_hq_dir")
@pytest.mark.parametrize("nproc", [1, 2])
def test_training_on_a_full_disk_keeps_the_earlier_checkpoint(small_disk, nproc):
    """Two processes: the main one writes, both stop (none waits for the other), the line is said once;
    torchrun then reports the failed children in its own words."""
    run = small_disk("2m") / "run"
    launcher = (
        [sys.executable]
        if nproc == 1
        else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    )
    proc = run_process([*launcher, *TRAIN[1:], "--save_dir", str(run), "train.iterations=4"], timeout=240)
    assert proc.returncode == 1, proc.stderr[-2000:]
    expected = f"main.py: error: {run / 'ckpt_0000004.pth'}: cannot write (no space left on device)"
    if nproc == 1:
        assert error_line(proc, "main.py: error:") == expected
    else:
        assert [line for line in proc.stderr.splitlines() if "main.py: error:" in line] == [expected]
    assert sorted(p.name for p in run.iterdir()) == ["ckpt_0000002.pth", "config.yaml", "tb"]
    assert read_training_state(run / "ckpt_0000002.pth")["step"] == 2  # complete: its zip directory is there


@pytest.mark.usefixtures("faces_hq_dir")
def test_training_into_a_read_only_folder(small_disk):
    run = small_disk("2m", read_only=True, folders=["run"]) / "run"
    proc = run_process([*TRAIN, "--save_dir", str(run), "train.iterations=2"])
    assert proc.returncode == 1
    assert (
        error_line(proc, "main.py: error:")
        == f"main.py: error: {run / 'config.yaml'}: cannot write (read-only file system)"
    )
    proc = run_process([*TRAIN, "--save_dir", str(run / "new"), "train.iterations=2"])
    assert proc.returncode == 1
    assert error_line(proc, "main.py: error:") == f"main.py: error: {run / 'new'}: cannot write (read-only file system)"


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, celeba_faces):
    return make_tiny_setup(tmp_path_factory.mktemp("tiny"), celeba_faces[:8])


@pytest.fixture(scope="module")
def faces(tmp_path_factory, real_lq_dir):
    """Three real faces at the tiny model's size, so that each result is one small page of the tmpfs."""
    folder = tmp_path_factory.mktemp("faces")
    for path in list_images(real_lq_dir / "wider_like")[:3]:
        write_image(folder / f"{path.stem}.png", cv2.resize(read_image(path), (32, 32), interpolation=cv2.INTER_AREA))
    return folder


def restore(tiny_config, faces, out: Path):
    return run_process(
        [
            sys.executable,
            "inference_difface.py",
            "-i",
            str(faces),
            "-o",
            str(out),
            "--aligned",
            "--bs",
            "1",
            "--config",
            str(tiny_config),
        ]
    )


def test_inference_on_a_full_disk_keeps_what_it_wrote(small_disk, tiny_config, faces):
    """12 KiB hold three 4 KiB pages: the first face's image and record, the second's image; its record
    is refused."""
    out = small_disk("12k") / "out"
    proc = restore(tiny_config, faces, out)
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = error_line(proc, "error:")
    assert line.startswith(f"error: {out}/") and line.endswith(": cannot write (no space left on device)"), line
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert not [name for name in written if name.endswith(".tmp") or "/." in name], written
    images = [p for p in (out / "restored").glob("*.png")]
    records = [p for p in (out / "records").glob("*.json")]
    assert records and len(images) >= len(records), written
    for image in images:
        assert read_image(image).shape == (32, 32, 3)
    for record in records:
        assert (out / "restored" / f"{json.loads(record.read_text())['key']}.png").is_file()


def test_inference_into_a_read_only_folder(small_disk, tiny_config, faces):
    out = small_disk("1m", read_only=True, folders=["out"]) / "out"
    proc = restore(tiny_config, faces, out)
    assert proc.returncode == 1
    line = error_line(proc, "error:")
    assert line.startswith(f"error: {out}/") and line.endswith(": cannot write (read-only file system)"), line
    assert list(out.iterdir()) == []


def test_write_failure_finds_the_os_error_behind_another_error():
    """torch.save reports a full disk as a RuntimeError raised while the OSError was handled."""
    import errno
    import os

    from utils.image_io import DiskWriteError, write_failure

    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 9114624 vs 9114512")  # noqa: B904 - torch raises it so
    except RuntimeError as err:
        failure = write_failure("run/ckpt_0000004.pth", err)
    assert isinstance(failure, DiskWriteError)
    assert str(failure) == "run/ckpt_0000004.pth: cannot write (no space left on device)"
    assert write_failure("x", failure) is failure
    assert write_failure("x", RuntimeError("unrelated")) is None and write_failure("x", KeyboardInterrupt()) is None
