"""Offline face detectors on whole photos with known faces: found faces, landmark error, crop PSNR, time.

    python -m benchmarks.bench_face_detection --images 12 --write

Composites of ``data.face_composites``. Reference rows: the true landmarks, and each detector on the source
faces alone (the "floor"). ``--write`` appends the report to docs/face_detection.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import REPO_ROOT, _shared, markdown_table, report
from data.face_composites import reference_crop, score_detections, standard_composites
from faces.align import TEMPLATE_SIZE, align_face, face_template
from faces.detection import DETECTORS, build_detector
from utils.metrics import psnr

FFHQ = Path("../shared/data/faces_hq/ffhq1024")
CELEBREF = Path("../shared/data/faces_hq/celebref512")
DOC = REPO_ROOT / "docs" / "face_detection.md"


def floor_row(detector, composites, crop: int) -> tuple:
    """The detector on each source face alone (padded by half its size): landmark error and crop PSNR."""
    errors, psnrs = [], []
    for face in (f for c in composites for f in c.faces):
        src = reference_crop(face, face.source_size if face.source_size <= 512 else 512)
        pad = src.shape[0] // 2
        padded = cv2.copyMakeBorder(src, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0.5, 0.5, 0.5))
        _, lms = detector.detect(padded)
        if len(lms) == 0:
            continue
        lm = lms[0] - pad
        errors.append(float(np.linalg.norm(lm * TEMPLATE_SIZE / src.shape[0] - face_template(), axis=1).mean()))
        aligned, _ = align_face(padded, lms[0], crop)
        psnrs.append(psnr(np.clip(aligned, 0, 1), reference_crop(face, crop)))
    return float(np.mean(errors)), float(np.mean(psnrs))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", type=int, default=128, help="aligned crop size for the PSNR")
    p.add_argument("--detectors", nargs="+", default=[d for d in DETECTORS if d not in ("auto", "retinaface")])
    p.add_argument("--write", action="store_true", help=f"append the report to {DOC.relative_to(REPO_ROOT)}")
    args = p.parse_args(argv)
    composites = standard_composites(_shared(FFHQ), _shared(CELEBREF), args.images, args.seed)
    total = sum(len(c.faces) for c in composites)
    truth = [score_detections(c, np.stack([f.landmarks for f in c.faces]), args.crop) for c in composites]
    rows = [
        [
            "true landmarks",
            f"{total}/{total}",
            0,
            0.0,
            0.0,
            np.mean([v for s in truth for v in s.crop_psnrs]),
            "-",
            "-",
            "-",
        ]
    ]
    for name in args.detectors:
        det = build_detector(name)
        start = time.perf_counter()
        scores = [score_detections(c, det.detect(c.image)[1], args.crop) for c in composites]
        seconds = (time.perf_counter() - start) / len(composites)
        err = np.array([v for s in scores for v in s.landmark_errors])
        ps = np.array([v for s in scores for v in s.crop_psnrs])
        floor_err, floor_psnr = floor_row(det, composites, args.crop)
        rows.append(
            [
                name,
                f"{sum(s.found for s in scores)}/{total}",
                sum(s.false_alarms for s in scores),
                float(np.nanmean(err)),
                float(np.nanmax(err)),
                float(np.nanmean(ps)),
                floor_err,
                floor_psnr,
                round(seconds, 2),
            ]
        )
    table = markdown_table(
        [
            "landmarks from",
            "faces found",
            "false alarms",
            "mean error (px @512)",
            "worst error",
            f"crop PSNR @{args.crop} (dB)",
            "floor: error",
            "floor: crop PSNR",
            "s / image",
        ],
        rows,
    )
    report(
        "Offline face detection on composites",
        ["benchmarks.bench_face_detection"] + list(sys.argv[1:] if argv is None else argv),
        [table],
        notes=[
            f"{len(composites)} composites ({total} faces), backgrounds 1080x720, faces 140-260 px, "
            f"angles up to 30 degrees, seed {args.seed}"
        ],
        write=args.write,
        path=DOC,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
