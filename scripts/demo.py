"""The README demo: restore faces with the shipped 64 px models and write a comparison grid.

    python scripts/demo.py [--input FOLDER] [--out results/demo]

``<out>/grid.png``: per row the DynFaceRestore strip, the DifFace result and the HQ face.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.degradation import degrade, load_degradation_config, severity_config  # noqa: E402
from faces.align import align_face  # noqa: E402
from inference.report import read_records  # noqa: E402
from inference.runner import main as run_inference  # noqa: E402
from inference.strip import make_strip, stack_rows, title_band  # noqa: E402
from utils.image_io import list_images, read_image, to_uint8, write_image  # noqa: E402

CONFIG = "configs/sample/dynfacerestore_demo.yaml"
DEGRADATION = "configs/degradation/demo64.yaml"
RESOLUTION = 64
HQ_SIZE = 128
SEED = 2025
SEVERITIES = ("mild", "medium", "severe")
#: Five landmarks (left eye, right eye, nose tip, left and right mouth corners) of skimage's astronaut
#: image, read off the 512x512 photo once; they align it to the FFHQ 512 template.
ASTRONAUT_LANDMARKS = np.array([[202.5, 101.5], [246.0, 103.5], [225.0, 125.0], [207.0, 145.0], [242.0, 145.0]])
#: CelebA-like crop of the FFHQ-aligned 512 face (x0, y0, side): CelebA crops are tighter than FFHQ.
CELEBA_CROP = (64, 80, 384)


def astronaut_face() -> np.ndarray:
    """The aligned astronaut face, HQ_SIZE x HQ_SIZE RGB float in [0, 1]."""
    from skimage import data

    photo = data.astronaut().astype(np.float32) / 255.0
    face, _ = align_face(photo, ASTRONAUT_LANDMARKS, face_size=512)
    x0, y0, side = CELEBA_CROP
    return cv2.resize(face[y0 : y0 + side, x0 : x0 + side], (HQ_SIZE, HQ_SIZE), interpolation=cv2.INTER_AREA)


def make_inputs(out: Path) -> Path:
    """Write the degraded astronaut faces to ``out/inputs`` and their HQ to ``out/hq``; return the inputs folder."""
    hq = cv2.resize(astronaut_face(), (RESOLUTION, RESOLUTION), interpolation=cv2.INTER_AREA)
    base = load_degradation_config(ROOT / DEGRADATION)
    for level, name in enumerate(SEVERITIES):
        cfg = severity_config(base, RESOLUTION, level)
        lq, _ = degrade(hq, np.random.default_rng([SEED, level]), cfg)
        write_image(out / "inputs" / f"astronaut_{name}.png", lq)
        write_image(out / "hq" / f"astronaut_{name}.png", hq)
    return out / "inputs"


def restore(inputs: Path, hq: Path, out: Path, method: str, extra: list) -> None:
    argv = [
        "-i",
        str(inputs),
        "-o",
        str(out),
        "--config",
        str(ROOT / CONFIG),
        "--aligned",
        "--bs",
        "4",
        "--task",
        "restoration",
        "--method",
        method,
        "--no-skip_existing",
        *extra,
    ]
    if hq.is_dir():
        argv += ["-i_hq", str(hq)]
    code = run_inference(argv)
    if code != 0:
        raise SystemExit(f"demo: inference_difface.py ({method}) failed with exit code {code}")


def _severity(path: Path):
    """The severity a demo input's name ends with (``astronaut_mild``), or None."""
    return next((s for s in SEVERITIES if path.stem.endswith(f"_{s}")), None)


def _severity_rank(path: Path) -> tuple:
    severity = _severity(path)
    return (SEVERITIES.index(severity) if severity else len(SEVERITIES), path.name)


def grid(inputs: Path, hq: Path, dyn: Path, base: Path, out_file: Path) -> Path:
    """One row per restored input, titled with its name (severity) and DynFaceRestore's sigma_hat: the
    DynFaceRestore strip (LQ | levels | guidance map | result), then the DifFace result and the HQ face."""
    sigma_hat = {r["key"]: r["sigma_hat"] for r in read_records(dyn)}
    rows = []
    for path in sorted(list_images(inputs), key=_severity_rank):  # mild, medium, severe, then other images
        strip_path = dyn / "intermediates" / f"{path.stem}.png"
        difface_path = base / "restored" / f"{path.stem}.png"
        if not strip_path.is_file() or not difface_path.is_file():
            continue
        strip = to_uint8(read_image(strip_path))
        tiles = [("DifFace", read_image(difface_path))]
        if (hq / path.name).is_file():
            tiles.append(("HQ", read_image(hq / path.name)))
        extra = make_strip(tiles)  # same tile size as the strip (both MIN_TILE)
        if extra.shape[0] != strip.shape[0]:
            extra = cv2.resize(extra, (round(extra.shape[1] * strip.shape[0] / extra.shape[0]), strip.shape[0]))
        row = np.concatenate([strip, np.full((strip.shape[0], 8, 3), 255, np.uint8), extra], axis=1)
        severity = _severity(path)
        sig = sigma_hat.get(path.stem)
        title = (
            f"{path.stem}"
            + (f"   severity: {severity}" if severity else "")
            + ("" if sig is None else f"   sigma_hat = {sig:.2f}")
        )
        rows.append(stack_rows([title_band(title, row.shape[1]), row], gap=0))
    if not rows:
        raise SystemExit("demo: nothing was restored, no grid written")
    return write_image(out_file, stack_rows(rows, gap=6))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="an extra folder of aligned face images to restore")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "demo")
    args = parser.parse_args(argv)
    out = args.out
    folders = [(make_inputs(out), out / "hq", "astronaut")]
    if args.input is not None:
        folders.append((args.input, out / "no_hq", "user"))
    grids = []
    for inputs, hq, tag in folders:
        dyn, base = out / tag / "dynfacerestore", out / tag / "difface"
        restore(inputs, hq, dyn, "dynfacerestore", ["--save_intermediates"])
        restore(inputs, hq, base, "difface", [])
        grids.append(grid(inputs, hq, dyn, base, out / f"grid_{tag}.png"))
    for path in grids:
        print(f"demo: comparison grid written to {path}")
    print(f"demo: restored images under {out}/*/dynfacerestore/restored and {out}/*/difface/restored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
