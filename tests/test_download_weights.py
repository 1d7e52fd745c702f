"""scripts/download_weights.py against a real HTTP server on 127.0.0.1 (a thread) serving files made here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest
import torch

from tests.script_modules import load_script
from utils.arcface import arcface_layout
from utils.eval_weights import DEFAULT_DIR, EVAL_WEIGHTS, find_weights
from utils.inception import inception_layout
from utils.landmarks import awing_layout

dw = load_script("download_weights")


def layout_file(path: Path, spec: str) -> bytes:
    """A checkpoint with the keys and shapes of ``spec`` (expanded zeros: a small file, the real layout)."""
    want = json.loads((dw.SPECS / f"{spec}.json").read_text())
    torch.save({k: torch.zeros(1).expand(shape) if shape else torch.zeros(()) for k, shape in want.items()}, path)
    return path.read_bytes()


class Server:
    """Serves ``files`` (name -> bytes) with Range support; ``cut`` bytes: stop a body there and close."""

    def __init__(self, files: dict):
        self.files, self.cut, self.ranges = files, None, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = server.files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    return self.send_error(404)
                start = 0
                if "Range" in self.headers:
                    server.ranges.append(self.headers["Range"])
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                sent = body[start:] if server.cut is None else body[start : server.cut]
                self.wfile.write(sent)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/V1.0"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def good_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("served")
    targets = dw.targets(folder)
    return {t.name: layout_file(folder / t.name, w.spec) for w, t in zip(dw.WEIGHTS, targets)}


def run(root: Path, url: str) -> int:
    return dw.main(["--base-url", url, "--root", str(root), "--timeout", "10"])


def test_good_files_are_downloaded_checked_and_kept(good_files, tmp_path, capsys):
    with Server(good_files) as server:
        assert run(tmp_path, server.url) == 0
        targets = dw.targets(tmp_path)
        for t in targets:
            assert t.read_bytes() == good_files[t.name]
        assert not list(tmp_path.rglob("*.part"))
        assert run(tmp_path, server.url) == 0  # a second run keeps them
    assert "already there" in capsys.readouterr().out


def test_a_cut_transfer_resumes_with_a_range_request(good_files, tmp_path, capsys):
    first = dw.targets(tmp_path)[0]
    with Server(good_files) as server:
        server.cut = len(good_files[first.name]) // 2
        assert run(tmp_path, server.url) == 1
        part = first.with_name(first.name + ".part")
        assert part.stat().st_size == server.cut and not first.exists()
        assert "run again to resume" in capsys.readouterr().err
        server.cut = None
        assert run(tmp_path, server.url) == 0
        assert server.ranges[0] == f"bytes={len(good_files[first.name]) // 2}-"
    assert first.read_bytes() == good_files[first.name] and not part.exists()


def test_wrong_content_is_rejected_and_nothing_is_left(good_files, tmp_path, capsys):
    unet, swinir = (t.name for t in dw.targets(tmp_path))
    swapped = {unet: good_files[swinir], swinir: b"not a checkpoint at all"}
    with Server(swapped) as server:
        assert run(tmp_path, server.url) == 1
    err = capsys.readouterr().err
    assert f"{unet}.part: not the layout of difface_iddpm_ffhq512_unet" in err and "cannot read checkpoint" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_no_server_gives_one_line_and_changes_nothing(tmp_path, capsys):
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run(tmp_path, f"http://127.0.0.1:{port}/V1.0") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing changed" in err
    for t in dw.targets(tmp_path):
        assert f"/{t.name} -> {t}" in err
    assert not list(tmp_path.iterdir())


def small_layout(model: torch.nn.Module, path: Path, wrap: Optional[str] = None) -> bytes:
    """``model``'s keys and shapes as expanded zeros (a small file of the real layout), optionally wrapped."""
    state = {k: torch.zeros(1).expand(v.shape) if v.dim() else torch.zeros(()) for k, v in model.state_dict().items()}
    torch.save({wrap: state} if wrap else state, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("served_eval")
    w = EVAL_WEIGHTS
    return {
        w["fid_inception"].file: small_layout(inception_layout(), folder / "i.pth"),
        w["arcface"].file: small_layout(arcface_layout(), folder / "a.pth"),
        w["awing"].file: small_layout(awing_layout(), folder / "w.pth", wrap="state_dict"),
    }


@pytest.fixture
def served_hash(eval_files, monkeypatch):
    """The FID Inception entry expects the served file's sha256 prefix (the real one is tested to reject it)."""
    weight = EVAL_WEIGHTS["fid_inception"]
    prefix = hashlib.sha256(eval_files[weight.file]).hexdigest()[:8]
    monkeypatch.setitem(EVAL_WEIGHTS, "fid_inception", dataclasses.replace(weight, sha256_prefix=prefix))


def run_eval(root: Path, url: str, *more: str) -> int:
    return dw.main(["--eval", "--base-url", url, "--root", str(root), "--timeout", "10", *more])


def eval_targets(root: Path) -> dict:
    return {w.file: w.target(root / DEFAULT_DIR) for w in EVAL_WEIGHTS.values() if w.url is not None}


def test_eval_files_are_downloaded_checked_and_kept(eval_files, served_hash, tmp_path, capsys):
    with Server(eval_files) as server:
        assert run_eval(tmp_path, server.url) == 0
        for name, target in eval_targets(tmp_path).items():
            assert target.read_bytes() == eval_files[name]
        assert not list(tmp_path.rglob("*.part"))
        assert run_eval(tmp_path, server.url) == 0
    out = capsys.readouterr().out
    assert out.count("already there") == 3 and "inception_FFHQ_512-f7b384ab.pth from BasicSR" in out
    for w in EVAL_WEIGHTS.values():  # and evaluate.py accepts them
        if w.url is not None:
            assert find_weights(w.name, tmp_path / DEFAULT_DIR) == w.target(tmp_path / DEFAULT_DIR)


def test_a_cut_eval_transfer_resumes(eval_files, served_hash, tmp_path):
    awing = EVAL_WEIGHTS["awing"]
    with Server(eval_files) as server:
        server.cut = len(eval_files[awing.file]) // 3
        assert run_eval(tmp_path, server.url) == 1
        part = eval_targets(tmp_path)[awing.file].with_name(awing.file + ".part")
        assert part.stat().st_size == server.cut
        server.cut = None
        assert run_eval(tmp_path, server.url) == 0
        assert f"bytes={len(eval_files[awing.file]) // 3}-" in server.ranges
    assert eval_targets(tmp_path)[awing.file].read_bytes() == eval_files[awing.file] and not part.exists()


def test_wrong_eval_content_and_a_wrong_hash_are_rejected(eval_files, tmp_path, capsys):
    w = EVAL_WEIGHTS
    swapped = {**eval_files, w["arcface"].file: eval_files[w["awing"].file]}
    with Server(swapped) as server:
        assert run_eval(tmp_path, server.url) == 1
    err = capsys.readouterr().err.splitlines()
    assert any("recognition_arcface_ir_se50.pth.part: not the arcface file" in line for line in err)
    assert any("sha256 does not start with 6726825d" in line for line in err)  # the real prefix, a layout file
    targets = eval_targets(tmp_path)
    assert not targets[w["arcface"].file].exists() and not targets[w["fid_inception"].file].exists()
    assert targets[w["awing"].file].exists() and not list(tmp_path.rglob("*.part"))


def test_eval_offline_is_one_line_and_list_fetches_nothing(tmp_path, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run_eval(tmp_path, f"http://127.0.0.1:{port}/x") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing changed" in err
    for name, target in eval_targets(tmp_path).items():
        assert f"/{name} -> {target}" in err
    assert dw.main(["--eval", "--list", "--root", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    for w in EVAL_WEIGHTS.values():
        assert (w.url or w.source) in listed and str(w.target(tmp_path / DEFAULT_DIR)) in listed
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
