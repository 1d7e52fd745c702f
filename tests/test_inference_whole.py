"""Whole photos end to end: torchrun with 2 CPU ranks, the shipped demo models and the offline detector.

Inputs: real faces pasted into real photos at known poses (data.face_composites), degraded (Gaussian blur,
2x area downsampling and bicubic back, JPEG 75): group photos with faces of 90-130 px, a photo with one face
smaller than the model's 64 px and one with a face three times larger, a photo without a face, a grayscale
photo and an RGBA photo; the clean composites are the HQ references. Checked: every output has its input's
size, every face was found and pasted back by the default (resolution-aware) paste-back as its record's
weights say (a face kept as it was is unchanged, a corrected one changed, at least one strongly), every
pixel outside the pasted faces' footprints equals the input, the face-less photo is written unchanged with
its note, metrics.csv carries the identity distance, each face's record its estimate and decision, and
summary.json and the log count the decisions.
"""

from __future__ import annotations

import csv
import json
import sys

import cv2
import numpy as np
import pytest

from data.face_composites import background, make_composite, standard_composites
from faces.align import estimate_similarity, face_template, pixels_per_face_pixel
from faces.identity import IDENTITY_CONVENTIONS
from faces.paste import face_to_upsampled, paste_decision, soft_face_mask
from proc_helpers import run_checked
from utils.image_io import read_image, write_image

DEMO_CONFIG = "configs/sample/dynfacerestore_demo.yaml"
RESOLUTION = 64


def _degrade(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(cv2.GaussianBlur(img, (0, 0), 1.5), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    up = np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    ok, buf = cv2.imencode(".jpg", np.round(up[:, :, ::-1] * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 75])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def photos(tmp_path_factory, faces_hq_dir):
    root = tmp_path_factory.mktemp("whole")
    lq, hq = root / "in", root / "hq"
    lq.mkdir()
    comps = standard_composites(
        faces_hq_dir / "ffhq1024", faces_hq_dir / "celebref512", count=4, seed=3, size=(360, 540), face_px=(90.0, 130.0)
    )
    celebref = sorted((faces_hq_dir / "celebref512").rglob("*.png"))
    comps += [
        make_composite([celebref[3]], seed=5, size=(300, 400), face_px=(52.0, 52.0), max_angle=10.0),
        make_composite([celebref[40]], seed=6, size=(360, 480), face_px=(192.0, 192.0), max_angle=10.0),
    ]
    names = ["group_a", "group_b", "gray", "rgba", "small_face", "large_face"]
    for name, c in zip(names, comps):
        write_image(hq / f"{name}.png", c.image)
        degraded = np.round(_degrade(c.image) * 255).astype(np.uint8)
        if name == "gray":
            cv2.imwrite(str(lq / f"{name}.png"), cv2.cvtColor(degraded[:, :, ::-1], cv2.COLOR_BGR2GRAY))
        elif name == "rgba":
            cv2.imwrite(str(lq / f"{name}.png"), cv2.cvtColor(degraded[:, :, ::-1], cv2.COLOR_BGR2BGRA))
        else:
            cv2.imwrite(str(lq / f"{name}.png"), degraded[:, :, ::-1])
    write_image(lq / "no_face.png", background("rocket", (300, 420)))
    return lq, hq, dict(zip(names, comps))


@pytest.mark.slow
def test_torchrun_restores_whole_photos(photos, lpips_weights_dir, tmp_path):
    lq, hq, comps = photos
    out = tmp_path / "out"
    proc = run_checked(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "inference_difface.py",
            "-i",
            str(lq),
            "-i_hq",
            str(hq),
            "-o",
            str(out),
            "--config",
            DEMO_CONFIG,
            "--bs",
            "2",
            "--lpips_weights",
            str(lpips_weights_dir),
            "--save_intermediates",
            "--opts",
            "diffusion.params.timestep_respacing=ddim50",
        ],
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert "face detector: mtcnn_dlib" in log and "no_face.png: no face detected" in log
    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}
    assert sorted(records) == sorted(list(comps) + ["no_face"])
    corrections = []  # (w_c, mean change of the face's centre) per face
    decisions = []  # every face's paste decision, as its record says
    for name in list(comps) + ["no_face"]:
        src = read_image(lq / f"{name}.png")  # gray -> RGB, alpha dropped, as the CLI reads it
        res = read_image(out / "restored" / f"{name}.png")
        assert res.shape == src.shape, name
        rec = records[name]
        if name == "no_face":
            assert rec["num_faces"] == 0 and any("no face detected" in n for n in rec["notes"])
            np.testing.assert_array_equal(res, src)
            continue
        comp = comps[name]
        assert rec["num_faces"] == len(comp.faces), (name, rec["num_faces"])
        footprint = np.zeros(src.shape[:2], bool)
        for face in rec["faces"]:
            affine = estimate_similarity(np.array(face["landmarks"]), face_template(RESOLUTION))
            footprint |= soft_face_mask((RESOLUTION, RESOLUTION), face_to_upsampled(affine, 1), src.shape[:2]) > 0
            assert face["nfe"] > 0 and len(face["box"]) == 5
            w_c, w_h = face["paste_weights"]  # resolution-aware by default
            assert 0.0 <= w_c <= 1.0 and 0.0 <= w_h <= 1.0
            assert face["decision"] == paste_decision((w_c, w_h))
            assert set(face["estimate"]) == {"blur", "crop_noise", "noise_share", "photo_noise", "scale"}
            assert face["estimate"]["scale"] == pytest.approx(pixels_per_face_pixel(affine), rel=1e-6)
            decisions.append(face["decision"])
        np.testing.assert_array_equal(res[~footprint], src[~footprint])
        yy, xx = np.mgrid[: src.shape[0], : src.shape[1]]
        for placed in comp.faces:  # every true face was pasted as its record says
            cx, cy = placed.landmarks.mean(0)
            face = min(rec["faces"], key=lambda f: np.hypot(*(np.array(f["landmarks"]).mean(0) - (cx, cy))))
            disc = np.hypot(xx - cx, yy - cy) < 0.2 * placed.scale * placed.source_size
            change = float(np.abs(res[disc] - src[disc]).mean())
            corrections.append((face["paste_weights"][0], change))
            if face["paste_weights"] == [0.0, 1.0]:  # judged no more blurred than the restorer's own output: kept
                assert change == 0.0, (name, placed.source.name)
            elif face["paste_weights"][0] >= 0.1:  # (a smaller correction may round away in the 8-bit file)
                assert change > 0.0, (name, placed.source.name)
        assert (out / "intermediates" / f"{name}_detections.png").is_file()
        assert len(list((out / "restored_faces").glob(f"{name}_*.png"))) == len(comp.faces)
    assert any(w_c > 0.5 and change > 0.01 for w_c, change in corrections), corrections  # something was restored
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    id_col = IDENTITY_CONVENTIONS["id_dist"]
    by_key = {r["key"]: r for r in rows}
    assert all(float(by_key[name][id_col]) >= 0 for name in comps)
    assert by_key["no_face"][id_col] == ""  # no HQ reference: empty cells
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces"] == {d: decisions.count(d) for d in ("kept", "partly", "restored")}
    assert (
        f"faces: {decisions.count('restored')} restored, {decisions.count('partly')} partly, "
        f"{decisions.count('kept')} kept as clean"
    ) in log
    assert summary["methods"]["dynfacerestore"]["mean"]["id_same"] is not None
