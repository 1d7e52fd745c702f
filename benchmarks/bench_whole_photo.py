"""Face-region quality of whole-photo restoration: the classic and the resolution-aware paste-back, one run.

    python -m benchmarks.bench_whole_photo --faces 8                 # the evaluation (CelebRef-HQ faces)
    python -m benchmarks.bench_whole_photo --set tune --tune noise   # choose paste parameters (tuning faces)

Real faces in real backgrounds (``data.face_composites``) at 0.75x-5x the model's resolution, degraded by
``data.photo_degradation``, aligned with their true landmarks, restored once and pasted back both ways; the
face region is scored against the HQ photo (PSNR, LPIPS, identity). ``--tune GROUP`` fits one group of
``faces.paste``'s parameters (``blur``, ``noise``, or ``restorer``: another method's d_0 and s_0) on faces
other than the evaluation's (:func:`face_sources`), keeping PSNR, LPIPS and ``--classic_share`` of classic's
gain (:func:`fit_parameters`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DYNFACE_SHARED", REPO.parent / "shared"))  # ../shared beside the repository
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import environment, markdown_table  # noqa: E402
from data.face_composites import BACKGROUNDS, make_composite  # noqa: E402
from data.photo_degradation import SETTINGS, degrade_photo  # noqa: E402
from faces.align import PAD_VALUE, align_face  # noqa: E402
from faces.identity import FaceIdentity  # noqa: E402
from faces.paste import (  # noqa: E402
    FaceEstimate,
    FacePaste,
    PasteConfig,
    aware_paste,
    face_estimates,
    face_to_upsampled,
    paste_face,
    paste_terms,
    paste_weights,
    soft_face_mask,
)
from inference.inputs import image_seed  # noqa: E402
from sampler import FaceRestoreSampler  # noqa: E402
from utils.image_io import img2tensor, tensor2img  # noqa: E402
from utils.metrics import LPIPSMetric, psnr  # noqa: E402

PHOTO_HW = (480, 640)
SIZE_FACTORS = (0.75, 1.5, 3.0, 5.0)
MAX_ANGLE = 10.0
GRID = np.linspace(0.0, 1.0, 6)  # w_c and w_h values scored per face with --tune
EVAL_FACES = 8  # the evaluation's default --faces; the tuning faces avoid these


@dataclass
class Case:
    """One face in one degraded photo: what the paste and the metrics need, cut to the face region."""

    face: str  # the HQ photo (face_name)
    factor: float
    chain: str
    severity: str
    box: Tuple[int, int, int, int]  # x0, y0, x1, y1 of the face region in the photo
    hq: np.ndarray  # HQ photo, face region
    lq_photo: np.ndarray  # the whole degraded photo (the paste needs it)
    crop: np.ndarray  # aligned LQ crop, the restorer's input
    affine: np.ndarray
    restored: Optional[np.ndarray] = None
    estimate: FaceEstimate = field(default_factory=lambda: FaceEstimate(0.0))
    scores: Dict[str, Dict[str, float]] = field(default_factory=dict)

    @property
    def cell(self) -> Tuple[float, str, str]:
        return self.factor, self.chain, self.severity


def face_sources(which: str, count: int) -> List[Path]:
    """``count`` evaluation faces spread over CelebRef-HQ's photos (and so its identities), or ``count``
    tuning faces: the FFHQ faces first, then CelebRef-HQ photos that are not among the first
    :data:`EVAL_FACES` evaluation faces, spread over the rest."""
    ffhq = sorted((SHARED / "data/faces_hq/ffhq1024").glob("*.png"))
    celebref = sorted((SHARED / "data/faces_hq/celebref512").rglob("*.png"))
    if which == "eval":
        faces = [celebref[int(i)] for i in np.linspace(0, len(celebref) - 1, count)] if celebref else []
    else:
        evaluation = set(face_sources("eval", EVAL_FACES)) if celebref else set()
        rest = [p for p in celebref if p not in evaluation]
        extra = max(0, min(count - len(ffhq), len(rest)))
        faces = ffhq + [rest[int(i)] for i in np.linspace(0, len(rest) - 1, extra)]
    if not faces:
        raise FileNotFoundError(f"no {which} faces under {SHARED}/data/faces_hq (set DYNFACE_SHARED)")
    return faces[:count]


def face_name(path: Path) -> str:
    """folder/file of an HQ photo: CelebRef-HQ's file names repeat across its identity folders."""
    return f"{path.parent.name}/{path.name}"


def region_box(affine: np.ndarray, face_size: int, photo_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """Bounding box of the soft paste mask (weights > 0) of the face aligned by ``affine``."""
    mask = soft_face_mask((face_size, face_size), face_to_upsampled(affine, 1), photo_hw)
    ys, xs = np.nonzero(mask > 0)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


KINDS = tuple(f"{chain}/{severity}" for chain, severity in SETTINGS)  # --kinds: data.photo_degradation's settings


def make_cases(
    faces: Sequence[Path],
    resolution: int,
    factors: Sequence[float],
    seed: int,
    bilinear_crops: bool = False,
    kinds: Sequence[str] = KINDS,
) -> List[Case]:
    """Every (face, size, chain, severity) of the run with chain/severity in ``kinds``, deterministic in
    ``seed`` (a case does not depend on which other kinds run)."""
    cases = []
    for (i, path), factor in itertools.product(enumerate(faces), factors):
        side = factor * resolution
        comp = make_composite(
            [path],
            seed=seed * 1000 + i * 10 + int(factor * 4),
            size=PHOTO_HW,
            face_px=(side, side),
            max_angle=MAX_ANGLE,
            background_name=BACKGROUNDS[i % len(BACKGROUNDS)],
        )
        landmarks = comp.faces[0].landmarks
        for k, (chain, severity) in enumerate(SETTINGS):
            if f"{chain}/{severity}" not in kinds:
                continue
            lq = degrade_photo(comp.image, chain, severity, np.random.default_rng([seed, i, int(factor * 4), k]))
            crop, affine = align_face(lq, landmarks, resolution)
            if bilinear_crops:  # the aligner of facexlib / GFPGAN / DifFace: no low-pass before sampling
                crop = cv2.warpAffine(
                    lq,
                    affine,
                    (resolution, resolution),
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=PAD_VALUE,
                )
            x0, y0, x1, y1 = box = region_box(affine, resolution, PHOTO_HW)
            cases.append(
                Case(face_name(path), factor, chain, severity, box, comp.image[y0:y1, x0:x1], lq, crop, affine)
            )
    return cases


def _case_key(c: Case) -> str:
    return f"{c.face}|{c.factor:g}|{c.chain}|{c.severity}"


def restoration_key(config: str, opts: Sequence[str], seed: int, bilinear_crops: bool) -> str:
    """What the restorations of a run depend on (the ``run_key`` of :func:`restore_all`): the config, its
    overrides other than ``paste.*`` (the paste-back does not change a restoration), the seed, the aligner."""
    return json.dumps([config, [o for o in opts if not o.startswith("paste.")], seed, bilinear_crops])


def restore_all(
    sampler: FaceRestoreSampler, cases: List[Case], bs: int, seed: int, cache: Optional[Path] = None, run_key: str = ""
) -> float:
    """Fill ``case.restored`` and ``case.estimate``; returns the sampling seconds of the faces restored
    now. With ``cache`` (an .npz) every case an earlier run with the same ``run_key`` restored is read
    instead of recomputed (keyed by face, size and setting), and the cache keeps the union of both runs."""
    stored: Dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            if str(data["run_key"]) == run_key:
                stored = dict(zip(data["keys"].tolist(), data["restored"]))
    todo = [c for c in cases if _case_key(c) not in stored]
    for c in cases:
        c.restored = stored.get(_case_key(c))
    start = time.perf_counter()
    for b in range(0, len(todo), bs):
        batch = todo[b : b + bs]
        out = sampler.restore(img2tensor([c.crop for c in batch]), [image_seed(seed, _case_key(c)) for c in batch])
        for c, img in zip(batch, tensor2img(out.images)):
            c.restored = img
        print(f"restored {min(b + bs, len(todo))}/{len(todo)} faces", file=sys.stderr, flush=True)
        if cache is not None:  # after every batch: an interrupted run keeps what it restored
            stored.update((_case_key(c), c.restored) for c in batch)
            _save_cache(cache, run_key, stored)
    elapsed = time.perf_counter() - start
    _estimate_degradations(cases)
    return elapsed


def _save_cache(cache: Path, run_key: str, stored: Dict[str, np.ndarray]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.stem + ".partial.npz")
    np.savez(partial, run_key=run_key, keys=np.array(list(stored)), restored=np.stack(list(stored.values())))
    os.replace(partial, cache)


def _estimate_degradations(cases: List[Case]) -> None:
    for c in cases:
        c.estimate = face_estimates(c.lq_photo, [c.restored], [c.crop], [c.affine])[0]


class Scorer:
    """PSNR, LPIPS and identity distance of a face region against the HQ one (``identity`` False: NaN)."""

    def __init__(self, lpips_weights: Optional[str], identity: bool = True):
        self.lpips = LPIPSMetric("alex", lpips_weights)
        self.identity = FaceIdentity() if identity else None

    def __call__(self, region: np.ndarray, hq: np.ndarray) -> Dict[str, float]:
        region = np.clip(region, 0.0, 1.0)
        dist = None if self.identity is None else self.identity.distance(region, hq)
        return {"psnr": psnr(region, hq), "lpips": self.lpips(region, hq), "id": float("nan") if dist is None else dist}


def _region(img: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return img[y0:y1, x0:x1]


def score_cases(cases: List[Case], scorer: Scorer, cfg: PasteConfig) -> None:
    """Input, classic and resolution-aware scores of every case (``case.scores``)."""
    for c in cases:
        c.scores["input"] = scorer(_region(c.lq_photo, c.box), c.hq)
        classic = paste_face(c.lq_photo, FacePaste(c.restored, c.crop, c.affine))
        c.scores["classic"] = scorer(_region(classic, c.box), c.hq)
        c.scores["resolution_aware"] = scorer(_region(_aware(c, cfg), c.box), c.hq)


def _aware(c: Case, cfg: PasteConfig) -> np.ndarray:
    """The photo with the face of ``c`` pasted back resolution-aware."""
    return paste_face(c.lq_photo, aware_paste(c.restored, c.crop, c.affine, c.estimate, cfg))


def grid_scores(cases: List[Case], scorer: Scorer, cfg: PasteConfig) -> np.ndarray:
    """(cases, len(GRID), len(GRID), 2): PSNR and LPIPS of the face region for each (w_c, w_h), pasting what
    the resolution-aware paste-back of ``cfg`` pastes (x_m, its misfit weight w_m)."""
    out = np.zeros((len(cases), len(GRID), len(GRID), 2))
    pairs = list(itertools.product(range(len(GRID)), range(len(GRID))))
    for n, c in enumerate(cases):
        pasted = aware_paste(c.restored, c.crop, c.affine, c.estimate, cfg)
        mask, correction, high = paste_terms(c.lq_photo, pasted)
        correction, high = _region(mask * correction, c.box), _region(mask * high, c.box)
        base = _region(c.lq_photo, c.box)
        regions = [np.clip(base + GRID[a] * correction - (1.0 - GRID[b]) * high, 0.0, 1.0) for a, b in pairs]
        lpips = scorer.lpips(img2tensor(regions), img2tensor([c.hq] * len(regions)))
        for (a, b), region, dist in zip(pairs, regions, lpips):
            out[n, a, b] = psnr(region, c.hq), dist
    return out


def _interp(grid: np.ndarray, w_c: float, w_h: float) -> np.ndarray:
    """Bilinear interpolation of a (len(GRID), len(GRID), k) table at (w_c, w_h)."""
    step = GRID[1] - GRID[0]
    a, b = min(len(GRID) - 2, int(w_c / step)), min(len(GRID) - 2, int(w_h / step))
    u, v = w_c / step - a, w_h / step - b
    return (
        (1 - u) * (1 - v) * grid[a, b]
        + u * (1 - v) * grid[a + 1, b]
        + (1 - u) * v * grid[a, b + 1]
        + u * v * grid[a + 1, b + 1]
    )


LPIPS_TOLERANCE = 1e-4  # the fit's "at most the input's LPIPS": rounding of the batched LPIPS evaluation
FIT_GRIDS = {  # --tune GROUP: the parameters fitted together, the others held at the config's values
    "blur": {
        "restorer_sigma_512": (0.0, 2.4, 3.2, 4.0, 4.4, 4.8, 5.2, 5.6, 6.4),
        "scale_sigma_512": (0.0, 0.4, 0.8, 1.2, 1.6),
        "high_band_sigma_512": (0.8, 1.6, 2.4, 3.6, 4.8, 6.4, 8.0, 12.0),
        "correction_sigma_512": (0.8, 1.6, 2.4, 3.6, 4.8, 6.4, 8.0, 12.0, 16.0),
        "correction_max": (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    },
    "noise": {
        "clean_noise": tuple(v / 255 for v in (2.0, 2.5, 3.0, 3.5, 4.0, 1e3)),
        "correction_noise": tuple(v / 255 for v in (1.0, 2.0, 4.0)),
        "high_band_noise": tuple(v / 255 for v in (1.0, 3.0, 1e9)),
    },
    "restorer": {
        "restorer_sigma_512": (5.6, 8.0, 8.8, 9.6, 10.4, 12.0, 16.0, 1e3),  # another restorer's d_0
        "clean_noise": (3.5 / 255, 1e3 / 255),
    },
}  # and whether its noise correction is taken (1e3: never)
FIT_DRAWS = 200  # subsets of EVAL_FACES faces drawn per cell (all of them when there are fewer)
FIT_CONFIDENCE = 0.95  # share of a cell's subsets whose mean must meet the constraints
RESOLVED_FACTOR = 2.0  # face size / resolution up to which the model resolves the face


def cell_faces(cases: List[Case]) -> Dict[Tuple[float, str, str], List[int]]:
    """The indices into ``cases`` of each cell's faces, cells in sorted order."""
    out: Dict[Tuple[float, str, str], List[int]] = {}
    for n, c in enumerate(cases):
        out.setdefault(c.cell, []).append(n)
    return dict(sorted(out.items()))


def cell_subsets(faces: Sequence[int], size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """(S, min(size, len(faces))) rows of face indices, each a subset of ``faces`` without repetition: every
    subset when there are at most ``draws`` of them, otherwise ``draws`` random ones."""
    faces = np.asarray(faces)
    size = min(size, len(faces))
    if math.comb(len(faces), size) <= draws:
        return np.array([faces[list(rows)] for rows in itertools.combinations(range(len(faces)), size)])
    return np.stack([rng.choice(faces, size, replace=False) for _ in range(draws)])


def holding_share(
    changes: np.ndarray,
    subsets: np.ndarray,
    psnr_margin: float,
    classic: Optional[np.ndarray] = None,
    classic_share: float = 0.0,
) -> float:
    """Share of ``subsets`` (rows of face indices) whose mean PSNR change is >= -``psnr_margin`` and mean
    LPIPS change <= :data:`LPIPS_TOLERANCE`; ``changes`` is (faces, 2): output - input, PSNR and LPIPS.
    With ``classic`` (the classic paste-back's changes, same layout), a subset where classic lowers the mean
    LPIPS must also gain at least ``classic_share`` of classic's gain."""
    means = changes[subsets].mean(axis=1)
    holds = (means[:, 0] >= -psnr_margin) & (means[:, 1] <= LPIPS_TOLERANCE)
    if classic is not None:
        classic_gain = -classic[subsets][:, :, 1].mean(axis=1)
        holds &= (classic_gain <= 0) | (-means[:, 1] >= classic_share * classic_gain)
    return float(np.mean(holds))


def keeps_classic_gain(cell: Tuple[float, str, str]) -> bool:
    """Whether the fit asks a cell for a share of classic's LPIPS gain (``--classic_share``): a face the model
    resolves (at most :data:`RESOLVED_FACTOR` x its resolution) that is noisy or compressed (every kind but
    blur alone)."""
    factor, chain, _ = cell
    return factor <= RESOLVED_FACTOR and chain != "blur"


def fit_candidates(base: PasteConfig, group: str) -> List[PasteConfig]:
    """``base`` with the parameters of ``group`` set to every point of its :data:`FIT_GRIDS` grid."""
    grid = FIT_GRIDS[group]
    return [replace(base, **dict(zip(grid, values))) for values in itertools.product(*grid.values())]


def interpolated_outputs(cases: List[Case], grids: np.ndarray, cfg: PasteConfig) -> np.ndarray:
    """(cases, 2): each face's PSNR and LPIPS at ``cfg``'s weights, interpolated on its :func:`grid_scores`."""
    return np.array([_interp(grids[n], *paste_weights(c.estimate, c.crop.shape[0], cfg)) for n, c in enumerate(cases)])


def pasted_outputs(cases: List[Case], scorer: Scorer, candidates: Sequence[PasteConfig]) -> np.ndarray:
    """(candidates, cases, 2): each face's PSNR and LPIPS pasted with each candidate's weights (x_m of the
    candidates' w_m, which they share), each distinct (face, weights) pasted and scored once."""
    out = np.zeros((len(candidates), len(cases), 2))
    for n, c in enumerate(cases):
        weights = [paste_weights(c.estimate, c.crop.shape[0], cfg) for cfg in candidates]
        pasted = aware_paste(c.restored, c.crop, c.affine, c.estimate, candidates[0])
        mask, correction, high = paste_terms(c.lq_photo, pasted)
        correction, high = _region(mask * correction, c.box), _region(mask * high, c.box)
        base = _region(c.lq_photo, c.box)
        scored: Dict[Tuple[float, float], Tuple[float, float]] = {}
        for k, (w_c, w_h) in enumerate(weights):
            if (w_c, w_h) not in scored:
                region = np.clip(base + w_c * correction - (1.0 - w_h) * high, 0.0, 1.0)
                scored[w_c, w_h] = psnr(region, c.hq), scorer.lpips(region, c.hq)
            out[k, n] = scored[w_c, w_h]
    return out


def fit_parameters(
    cases: List[Case],
    candidates: Sequence[PasteConfig],
    outputs: Callable[[int], np.ndarray],
    psnr_margin: float,
    classic_share: float = 0.0,
    seed: int = 0,
) -> Tuple[PasteConfig, dict]:
    """The candidate minimising the mean LPIPS (``outputs(k)``: (cases, 2) PSNR and LPIPS of every face with
    candidate k), subject to constraints that must hold for an evaluation of :data:`EVAL_FACES` faces per
    cell, not only for the tuning faces' own means: in at least :data:`FIT_CONFIDENCE` of each cell's subsets
    of that many tuning faces (:func:`cell_subsets`), the subset's PSNR is >= its input's - ``psnr_margin``,
    its LPIPS <= its input's and, in the cells of :func:`keeps_classic_gain`, its LPIPS gain at least
    ``classic_share`` of classic's where classic gains (:func:`holding_share`). A cell of at most
    EVAL_FACES faces is its one subset: the constraints on its mean."""
    rng = np.random.default_rng(seed)
    cells = cell_faces(cases)
    inputs, classic = (
        np.array([[c.scores[v][m] for m in ("psnr", "lpips")] for c in cases]) for v in ("input", "classic")
    )
    classic_changes = classic - inputs
    constraints = [
        (cell_subsets(faces, EVAL_FACES, FIT_DRAWS, rng), classic_changes if keeps_classic_gain(cell) else None)
        for cell, faces in cells.items()
    ]
    best = None
    for k, cfg in enumerate(candidates):
        scored = outputs(k)
        changes = scored - inputs
        share = min(holding_share(changes, rows, psnr_margin, asked, classic_share) for rows, asked in constraints)
        lpips = float(scored[:, 1].mean())
        if share >= FIT_CONFIDENCE and (best is None or lpips < best[0]):
            worst = min(float(changes[faces, 0].mean()) for faces in cells.values())
            best = (lpips, cfg, worst, share)
    if best is None:
        raise RuntimeError(
            "no parameters keep every cell's PSNR within the margin, its LPIPS at most the input's and "
            f"{classic_share:.0%} of classic's gain where asked"
        )
    lpips, cfg, worst, share = best
    return cfg, {"mean_lpips": lpips, "worst_psnr_change": worst, "holding_share": share}


def _cell_means(cases: List[Case]) -> Dict[Tuple[float, str, str], Dict[str, Dict[str, float]]]:
    """Mean scores per cell: {cell: {input | classic | resolution_aware: {psnr, lpips, id}}}."""
    return {
        cell: {
            v: {m: float(np.nanmean([cases[n].scores[v][m] for n in faces])) for m in ("psnr", "lpips", "id")}
            for v in ("input", "classic", "resolution_aware")
        }
        for cell, faces in cell_faces(cases).items()
    }


def overall_line(cases: List[Case]) -> str:
    """The resolution-aware paste-back over all cells (each cell weighs the same): mean PSNR change and mean
    LPIPS against the input, and the LPIPS gain averaged over the severe cells."""
    means = _cell_means(cases)
    change = np.mean([m["resolution_aware"]["psnr"] - m["input"]["psnr"] for m in means.values()])
    lpips = np.mean([[m["input"]["lpips"], m["resolution_aware"]["lpips"]] for m in means.values()], axis=0)
    severe = np.mean(
        [m["input"]["lpips"] - m["resolution_aware"]["lpips"] for cell, m in means.items() if cell[2] == "severe"]
    )
    return (
        f"resolution-aware over {len(means)} cells: PSNR change {change:+.3f} dB, LPIPS {lpips[0]:.4f} -> "
        f"{lpips[1]:.4f}; severe cells' LPIPS gain {severe:.3f}"
    )


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, int]:
    """Mean of a - b over the pairs where both are scored (identity is NaN where dlib finds no face), its
    standard error s / sqrt(n) (s the sample standard deviation of the differences; NaN for n < 2), and n."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return float("nan"), float("nan"), 0
    error = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else float("nan")
    return float(diff.mean()), error, int(diff.size)


def summary_rows(cases: List[Case]) -> List[list]:
    """One row per cell (:data:`HEADERS`): the means of :func:`_cell_means`, and the identity distance of
    the resolution-aware paste-back minus classic's, face by face, with its standard error: how far apart
    the two are, against how much the cell's mean would move with other faces."""
    rows = []
    means = _cell_means(cases)
    for cell, faces in cell_faces(cases).items():
        group, mean = [cases[n] for n in faces], means[cell]
        factor, chain, severity = cell
        rows.append(
            [f"{factor:g}x", f"{chain} {severity}", len(group)]
            + [f"{mean[v]['psnr']:.2f}" for v in ("input", "classic", "resolution_aware")]
            + [f"{mean[v]['lpips']:.3f}" for v in ("input", "classic", "resolution_aware")]
            + [f"{mean[v]['id']:.3f}" for v in ("input", "classic", "resolution_aware")]
            + [
                "{:+.3f} ({:.3f})".format(
                    *paired_difference(
                        [c.scores["resolution_aware"]["id"] for c in group], [c.scores["classic"]["id"] for c in group]
                    )
                )
            ]
            + [
                f"{np.mean([getattr(c.estimate, k) for c in group]):{f}}"
                for k, f in (("blur", ".2f"), ("crop_noise", ".4f"), ("noise_share", ".2f"), ("photo_noise", ".4f"))
            ]
        )
    return rows


def write_example(cases: List[Case], cfg: PasteConfig, setting: str, factor: float, path: Path) -> None:
    """The face region of the first face of size ``factor`` under ``setting`` (chain/severity), side by side:
    input | classic | resolution-aware | HQ, each labelled."""
    from inference.strip import make_strip
    from utils.image_io import write_image

    chain, severity = setting.split("/")
    chosen = [c for c in cases if (c.chain, c.severity, c.factor) == (chain, severity, factor)]
    if not chosen:
        raise ValueError(f"--example_setting {setting} --example_factor {factor:g}: no such case in this run")
    c = chosen[0]
    classic = paste_face(c.lq_photo, FacePaste(c.restored, c.crop, c.affine))
    tiles = [
        ("input", _region(c.lq_photo, c.box)),
        ("classic", _region(classic, c.box)),
        ("resolution-aware", _region(_aware(c, cfg), c.box)),
        ("HQ", c.hq),
    ]
    side = min(c.hq.shape[:2])
    y0, x0 = (c.hq.shape[0] - side) // 2, (c.hq.shape[1] - side) // 2
    write_image(path, make_strip([(label, np.clip(img[y0 : y0 + side, x0 : x0 + side], 0, 1)) for label, img in tiles]))
    print(f"- example: {path} ({c.face}, face {c.factor:g}x the model's resolution, {chain} {severity})")


HEADERS = [
    "face size",
    "degradation",
    "faces",
    "PSNR in",
    "PSNR classic",
    "PSNR aware",
    "LPIPS in",
    "LPIPS classic",
    "LPIPS aware",
    "ID in",
    "ID classic",
    "ID aware",
    "ID aware - classic (SE)",
    "mean d",
    "mean s_y",
    "mean nu",
    "mean s_B",
]


def _paste_params(cfg) -> str:
    keys = dict.fromkeys(key for group in FIT_GRIDS.values() for key in group)  # each once, in order
    return ", ".join(f"{key} {getattr(cfg, key):g}" for key in keys) + f", misfit_weight {cfg.misfit_weight:g}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_whole_photo", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/sample/dynfacerestore_demo.yaml")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument(
        "--set",
        choices=("eval", "tune"),
        default="eval",
        help="CelebRef-HQ photos (eval) or FFHQ faces, then other CelebRef-HQ photos (tune)",
    )
    p.add_argument(
        "--faces",
        type=int,
        default=EVAL_FACES,
        help="eval: CelebRef-HQ photos spread over the set; tune: the 10 FFHQ faces, then CelebRef-HQ "
        f"photos outside the first {EVAL_FACES} evaluation faces",
    )
    p.add_argument("--factors", type=float, nargs="+", default=list(SIZE_FACTORS), help="face size / resolution")
    p.add_argument(
        "--kinds",
        nargs="+",
        default=list(KINDS),
        choices=KINDS,
        metavar="CHAIN/SEVERITY",
        help=f"degradations (data/photo_degradation.py): {' '.join(KINDS)}",
    )
    p.add_argument("--bs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bilinear_crops", action="store_true", help="align without the anti-aliasing low-pass")
    p.add_argument(
        "--tune",
        choices=tuple(FIT_GRIDS),
        default=None,
        help="fit this group of paste parameters, the others held at the config's (module docstring)",
    )
    p.add_argument("--psnr_margin", type=float, default=0.05, help="--tune: allowed PSNR loss per cell (dB)")
    p.add_argument(
        "--classic_share",
        type=float,
        default=0.8,
        help="--tune: share of classic's LPIPS gain kept where the model resolves a noisy or compressed face",
    )
    p.add_argument("--lpips_weights", default=str(SHARED / "weights/lpips"))
    p.add_argument("--no_identity", action="store_true", help="skip the dlib identity distance (NaN in the table)")
    p.add_argument("--json", default=None, help="write every per-face score here")
    p.add_argument(
        "--cache",
        default=None,
        metavar="NPZ",
        help="keep the restorations here and reuse them when the config, options and cases match",
    )
    p.add_argument(
        "--example",
        default=None,
        metavar="PNG",
        help="write the face region of the first face of --example_setting at --example_factor: "
        "input | classic | resolution-aware | HQ",
    )
    p.add_argument("--example_setting", default="project/severe", help="chain/severity of --example")
    p.add_argument("--example_factor", type=float, default=1.5, help="face size / resolution of --example")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    sampler = FaceRestoreSampler.from_config(REPO / args.config, args.opts)
    paste_cfg = PasteConfig(**OmegaConf.to_container(sampler.cfg.paste))
    cases = make_cases(
        face_sources(args.set, args.faces), sampler.resolution, args.factors, args.seed, args.bilinear_crops, args.kinds
    )
    run_key = restoration_key(args.config, args.opts, args.seed, args.bilinear_crops)
    seconds = restore_all(sampler, cases, args.bs, args.seed, Path(args.cache) if args.cache else None, run_key)
    scorer = Scorer(args.lpips_weights, identity=not args.no_identity)
    notes = []
    if args.tune:
        score_cases(cases, scorer, paste_cfg)
        candidates = fit_candidates(paste_cfg, args.tune)
        if args.tune == "blur":  # thousands of candidates: interpolate on each face's (w_c, w_h) grid
            grids = grid_scores(cases, scorer, paste_cfg)
            fitted, fit = fit_parameters(
                cases,
                candidates,
                lambda k: interpolated_outputs(cases, grids, candidates[k]),
                args.psnr_margin,
                args.classic_share,
            )
        else:  # a few dozen: paste each
            table = pasted_outputs(cases, scorer, candidates)
            fitted, fit = fit_parameters(cases, candidates, lambda k: table[k], args.psnr_margin, args.classic_share)
        notes.append(
            f"fitted paste parameters: {_paste_params(fitted)} (mean LPIPS "
            f"{fit['mean_lpips']:.4f}, worst cell PSNR change {fit['worst_psnr_change']:+.3f} dB, "
            f"constraints met by {fit['holding_share']:.0%} of the worst cell's {EVAL_FACES}-face subsets)"
        )
        paste_cfg = fitted
    score_cases(cases, scorer, paste_cfg)
    env = environment()
    print(f"## Whole photos, {sampler.method} ({args.config}), {args.set} faces\n")
    print(f"- command: `python -m benchmarks.bench_whole_photo {' '.join(argv if argv is not None else sys.argv[1:])}`")
    print(
        f"- {len(cases)} faces, those not cached restored in {seconds:.0f} s; {env['machine']}; "
        f"torch {env['torch']}; {env['date']}"
    )
    print(f"- paste parameters: {_paste_params(paste_cfg)}")
    for note in notes:
        print(f"- {note}")
    print(f"- {overall_line(cases)}")
    print()
    print(markdown_table(HEADERS, summary_rows(cases)))
    if args.example:
        write_example(cases, paste_cfg, args.example_setting, args.example_factor, Path(args.example))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                [
                    dict(
                        face=c.face,
                        factor=c.factor,
                        chain=c.chain,
                        severity=c.severity,
                        estimate=vars(c.estimate),
                        scores=c.scores,
                    )
                    for c in cases
                ],
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
