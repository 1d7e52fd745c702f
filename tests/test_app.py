"""The web page (app.py): ``python app.py --host 127.0.0.1 --port N`` started as a real server, driven by
gradio_client and by a headless Chromium (selenium + Debian's chromium-driver), plus its library
(inference.interactive) against the command line.

Checked: a real LQ face from ../shared/data/real_lq/wider_like comes back at the model's resolution with its
sampler facts, timings and downloads, and equals the command line's result for the same file and seed; a
whole photo (real faces pasted into a real photo), given with the page's defaults, comes back whole at its own
size with one table row per face and each face's paste decision;
corrupt, empty and too-small uploads get the command line's one-line messages; samplers are built once per
(config, method); in the browser, uploading a face and clicking Restore shows the result image.
``DYNFACE_SCREENSHOT=docs/app_screenshot.png`` also saves the page after the restore.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from faces.paste import DECISIONS
from inference.inputs import InputSkip
from inference.interactive import DEFAULT_CONFIG, X0_TILES, Restorer, skip_message
from proc_helpers import DIST_ENV, REPO_ROOT
from utils.image_io import read_image, to_uint8, write_image

RESOLUTION = 64  # the demo config's
SERVER_START_TIMEOUT = 120
BROWSER_TIMEOUT = 180
BAD_FILES = {  # file -> the command line's reason (inference.inputs.load_image)
    "broken.png": "not a decodable image (corrupt or unsupported format)",
    "empty.png": "empty file",
    "tiny.png": "too small (8x8 px, the shorter side must be at least 16 px)",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def face(real_lq_dir) -> Path:
    path = real_lq_dir / "wider_like" / "0143.png"
    if not path.is_file():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "empty.png").write_bytes(b"")
    write_image(folder / "tiny.png", np.full((8, 8, 3), 0.5, np.float32))
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` on a free port of 127.0.0.1; yields its URL, stops it afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "app.log"
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env.update(OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"app.py did not answer on {url} within {SERVER_START_TIMEOUT} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server, verbose=False, download_files=str(tmp_path_factory.mktemp("client")))


def _predict(
    client, paths, aligned=True, method="dynfacerestore", eta="auto", seed=0, upscale=1.0, steps=0, solver="config"
):
    from gradio_client import handle_file

    return client.predict(
        [handle_file(str(p)) for p in paths],
        aligned,
        method,
        eta,
        seed,
        upscale,
        DEFAULT_CONFIG,
        steps,
        solver,
        api_name="/restore",
    )


def _rgb(path) -> np.ndarray:
    return np.round(read_image(path) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- the library
def test_library_matches_the_command_line_and_reuses_samplers(face, tmp_path):
    from inference.runner import main

    restorer = Restorer()
    steps = []
    report = restorer.restore_file(
        face, seed=7, aligned=True, on_step=lambda k, n, nfe: steps.append(nfe), steps=40, solver="dpmpp_2m"
    )
    assert (
        main(
            [
                "-i",
                str(face),
                "-o",
                str(tmp_path / "cli"),
                "--aligned",
                "--config",
                DEFAULT_CONFIG,
                "--seed",
                "7",
                "--steps",
                "40",
                "--solver",
                "dpmpp_2m",
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(to_uint8(report.result), _rgb(tmp_path / "cli" / "restored" / "0143.png"))
    info = report.faces[0].info
    assert report.result.shape == (512, 512, 3) and info["nfe"] == info["start_index"] + 1 > 1  # its own size
    assert report.faces[0].result.shape == (RESOLUTION, RESOLUTION, 3) and info["decision"] in DECISIONS
    assert steps == list(range(info["nfe"] + 1))  # once before the face, then after every UNet evaluation
    assert len(report.faces[0].levels) == len(info["sigmas"]) and report.faces[0].guidance_map is not None
    x0_ts = [t for t, _ in report.faces[0].x0_steps]  # guided x0 tiles: evenly spaced steps, the last at t = 0
    assert len(x0_ts) == min(X0_TILES, info["nfe"]) and x0_ts[0] == info["start_t"] and x0_ts[-1] == 0
    sampler = restorer.sampler(DEFAULT_CONFIG, "dynfacerestore", 40, "dpmpp_2m")
    assert sampler.scfg.solver == "dpmpp_2m" and sampler.timestep_map.numel() == 40
    restorer.restore_file(face, method="rm0", aligned=True)
    assert restorer.sampler(DEFAULT_CONFIG, "dynfacerestore", 40, "dpmpp_2m") is sampler
    assert len(restorer.cached) == 2


def test_library_refuses_files_like_the_command_line(bad_files, tmp_path, capsys):
    from inference.runner import main

    assert main(["-i", str(bad_files), "-o", str(tmp_path / "cli"), "--aligned", "--config", DEFAULT_CONFIG]) == 1
    log = capsys.readouterr().out
    for name, reason in BAD_FILES.items():
        with pytest.raises(InputSkip) as err:
            Restorer().restore_file(bad_files / name, method="rm0", aligned=True)
        assert skip_message(name, err.value) == f"{name}: skipped: {reason}"
        assert f"{bad_files / name}: skipped: {reason}" in log


# ---------------------------------------------------------------------------------------------- the server
@pytest.mark.slow
def test_server_restores_a_real_face(client, face):
    result = _predict(client, [face])
    choice, shown_input, shown_result, before_after, strips, facts, table, downloads, messages = result
    assert choice["value"] == "0143.png"
    out = _rgb(shown_result)
    assert out.shape == (512, 512, 3)  # an aligned face larger than the model comes back at its own size
    assert _rgb(shown_input).shape == (512, 512, 3)
    before, after = before_after
    assert _rgb(before).shape == out.shape and np.array_equal(_rgb(after), out)
    assert _rgb(strips).shape[1] > _rgb(strips).shape[0] >= RESOLUTION  # one face: one wide strip
    assert "start step" in facts and "sigma_hat" in facts
    (row,) = table["data"]
    row = dict(zip(table["headers"], row))
    assert row["NFE"] == row["start index"] + 1 > 1 and row["seconds"] > 0 and row["method"] == "dynfacerestore"
    assert sorted(Path(p).name for p in downloads) == ["0143_restored.png", "0143_strip.png"]
    restored = next(p for p in downloads if p.endswith("0143_restored.png"))
    np.testing.assert_array_equal(_rgb(restored), out)
    assert messages == "all photos restored"


@pytest.mark.slow
def test_strip_image_has_no_toolbar_over_its_titles(server):
    with urllib.request.urlopen(server + "config", timeout=10) as resp:
        components = json.load(resp)["components"]
    (strips,) = [c["props"] for c in components if c.get("props", {}).get("elem_id") == "strips"]
    assert strips["buttons"] == []  # the download / share / fullscreen buttons covered the "result" title


@pytest.mark.slow
def test_server_refuses_bad_uploads_with_the_cli_messages(client, bad_files, face):
    from gradio_client.exceptions import AppError

    for name, reason in BAD_FILES.items():
        with pytest.raises(AppError) as err:
            _predict(client, [bad_files / name], method="rm0")
        assert str(err.value) == f"{name}: skipped: {reason}"
    *_, table, _, messages = _predict(client, [face, bad_files / "broken.png"], method="rm0")
    assert len(table["data"]) == 1 and messages == f"broken.png: skipped: {BAD_FILES['broken.png']}"


@pytest.mark.slow
def test_server_restores_a_whole_photo(client, faces_hq_dir, tmp_path):
    from data.face_composites import standard_composites

    comp = standard_composites(
        faces_hq_dir / "ffhq1024", faces_hq_dir / "celebref512", count=1, seed=3, size=(300, 420), face_px=(90.0, 120.0)
    )[0]
    small = cv2.resize(comp.image, (210, 150), interpolation=cv2.INTER_AREA)
    photo = write_image(tmp_path / "group.png", cv2.resize(small, (420, 300), interpolation=cv2.INTER_CUBIC))
    from gradio_client import handle_file

    # the page's own defaults (whole photos): only the photo is given
    _, _, shown_result, _, strips, facts, table, downloads, _ = client.predict(
        files=[handle_file(str(photo))], api_name="/restore"
    )
    assert _rgb(shown_result).shape == (300, 420, 3)
    assert len(table["data"]) == len(comp.faces) and "detector" in facts
    decisions = [row[table["headers"].index("paste")] for row in table["data"]]
    assert all(d in DECISIONS for d in decisions), decisions
    assert all(f"face {k}: {d}" in facts for k, d in enumerate(decisions))
    assert _rgb(strips).shape[0] >= len(comp.faces) * RESOLUTION  # one strip per face, stacked
    names = sorted(Path(p).name for p in downloads)
    assert "group_restored.png" in names and "group_face00.png" in names


# ---------------------------------------------------------------------------------------------- the browser
def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "headless browser not found: need chromium and chromedriver on PATH "
            "(bash scripts/install_browser.sh installs Debian's chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1700",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@pytest.mark.slow
def test_browser_uploads_a_face_and_shows_the_result(server, face):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.get(server)
        wait = WebDriverWait(browser, BROWSER_TIMEOUT)
        upload = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#photos input[type=file]"))
        upload.send_keys(str(face))
        wait.until(lambda b: "0143" in b.find_element(By.ID, "photos").text)  # name shown: upload done
        browser.find_element(By.ID, "restore-button").click()
        result_img = "#result-image img"
        wait.until(
            lambda b: b.execute_script(
                "const i = document.querySelector(arguments[0]); return i && i.complete && i.naturalWidth > 0;",
                result_img,
            )
        )
        img = browser.find_element(By.CSS_SELECTOR, result_img)
        assert img.get_attribute("src")
        assert (
            browser.execute_script("return document.querySelector(arguments[0]).naturalWidth;", result_img) == 512
        )  # a whole photo by default: the photo's own size
        wait.until(lambda b: "start step" in b.find_element(By.ID, "facts").text)
        assert browser.find_elements(By.CSS_SELECTOR, "#before-after img")
        wait.until(
            lambda b: b.execute_script(  # the intermediates strip of the face is shown too
                "const i = document.querySelector('#strips img'); return i && i.complete && i.naturalWidth > 0;"
            )
        )
        shot = os.environ.get("DYNFACE_SCREENSHOT")
        if shot:
            height = browser.execute_script("return document.documentElement.scrollHeight;")
            browser.set_window_size(1400, max(1000, int(height)))
            time.sleep(1.0)
            path = Path(shot) if shot.lower().endswith(".png") else REPO_ROOT / "docs" / "app_screenshot.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert browser.save_screenshot(str(path))
    finally:
        browser.quit()
