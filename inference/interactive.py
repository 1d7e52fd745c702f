"""Restoring uploaded photos one at a time, in-process: the library behind the web page ``app.py``.

The same reading, seeds, sampling and paste-back as the command line (:mod:`inference.runner`), results in
memory. Samplers are built once per (config, method, steps, solver, overrides) (:class:`Restorer`).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from faces.detection import build_detector
from faces.paste import bicubic_upsample, restore_whole_image
from inference.args import build_parser
from inference.inputs import (
    InputSkip,
    LoadedImage,
    image_seed,
    load_image,
    prepare_aligned,
    sized_image,
    square_aligned,
)
from inference.runner import aligned_result, intermediate_tiles, intermediates, no_face_note, paste_facts, sample_info
from inference.steps import steps_overrides
from inference.strip import make_strip
from sampler import FaceRestoreSampler, SamplerStep, parse_eta
from utils.image_file import FileFacts, faithful_pixels, from_pixels
from utils.image_io import apply_orientation, img2tensor, tensor2img, write_image
from utils.model_factory import resolve_path

_CLI = build_parser()  # one source of truth for the defaults shared with inference_difface.py
DEFAULT_CONFIG = "configs/sample/dynfacerestore_demo.yaml"
MIN_SIDE: int = _CLI.get_default("min_side")
MAX_SIDE: int = _CLI.get_default("max_side")
MIN_FACE_SIZE: int = _CLI.get_default("min_face_size")
DETECTION_WEIGHTS: str = _CLI.get_default("detection_weights")
DETECTOR: str = _CLI.get_default("detector")

StepCallback = Callable[[int, int, int], None]  # (face index, number of faces, UNet evaluations so far)
X0_TILES = 4  # guided x0 predictions shown per face, evenly spaced over its steps (the last one included)


def skip_message(name: str, err: InputSkip) -> str:
    """The command line's line for a refused file: ``<file>: skipped: <reason>``."""
    return f"{name}: skipped: {err}"


@dataclass
class FaceReport:
    """One restored face: the aligned input at the model's resolution, the result, the sampler's facts
    (``info``: :func:`inference.runner.sample_info` plus seed and seconds) and the intermediates."""

    index: int
    lq: np.ndarray
    result: np.ndarray
    info: dict
    levels: List[Tuple[float, np.ndarray]] = field(default_factory=list)  # (sigma, blurred level y'_k)
    guidance_map: Optional[np.ndarray] = None  # HxW in [0, 1]: mean guidance scale s over the guided steps
    x0_steps: List[Tuple[int, np.ndarray]] = field(default_factory=list)  # (t, guided x0) at X0_TILES steps
    strip: Optional[np.ndarray] = None  # uint8 LQ | levels | guidance map | x0 at t | result


@dataclass
class PhotoReport:
    """One uploaded photo: what was read, the restored image, its faces and notes."""

    name: str  # the uploaded file's name
    key: str  # its stem: seeds and download names
    input: np.ndarray  # as read (float RGB [0, 1]; downscaled when above MAX_SIDE)
    before: np.ndarray  # the input at the result's size (the "before" of a before/after view)
    result: np.ndarray
    faces: List[FaceReport]
    aligned: bool
    method: str
    notes: List[str] = field(default_factory=list)
    detector: Optional[str] = None
    facts: FileFacts = field(default_factory=FileFacts)  # what the file was (of the aligned crop for faces)

    def output(self) -> np.ndarray:
        """The result's pixels as the file was (``utils.image_file.faithful_pixels``): dtype, channels, alpha."""
        return faithful_pixels(self.result, self.before, self.facts)

    def write(self, folder: os.PathLike | str) -> List[Path]:
        """Write the result (``<key>_restored.png``, :meth:`output`), for whole photos each restored face
        (``<key>_face<k>.png``), and every face's strip (``<key>[_face<k>]_strip.png``)."""
        folder = Path(folder)
        paths = [write_image(folder / f"{self.key}_restored.png", self.output())]
        for face in self.faces:
            stem = self.key if self.aligned else f"{self.key}_face{face.index:02d}"
            if not self.aligned:
                paths.append(write_image(folder / f"{stem}.png", face.result))
            if face.strip is not None:
                paths.append(write_image(folder / f"{stem}_strip.png", face.strip))
        return paths


def parse_overrides(text: str | Sequence[str] | None) -> Tuple[str, ...]:
    """``"a.b=1 c=2"`` (or a list) -> ``("a.b=1", "c=2")``; raises ValueError for an entry without '='."""
    items = re.split(r"[\s,]+", text.strip()) if isinstance(text, str) else list(text or [])
    items = [o for o in items if o]
    bad = [o for o in items if "=" not in o]
    if bad:
        raise ValueError(f"config overrides must be key=value, got {bad}")
    return tuple(items)


class Restorer:
    """Samplers built once per (config, method, overrides), a face detector built on first use, and the
    restoration of one uploaded photo (:meth:`restore_file`). Not thread-safe: one restore at a time."""

    def __init__(
        self,
        device: str = "cpu",
        detector: Optional[object] = None,
        detector_name: str = DETECTOR,
        detection_weights: Optional[str] = DETECTION_WEIGHTS,
        min_face_size: int = MIN_FACE_SIZE,
        overrides: Sequence[str] = (),
    ):
        self.device = device
        self._detector = detector
        self._detector_args = (detector_name, detection_weights, min_face_size)
        self.overrides = tuple(overrides)
        self._samplers: Dict[tuple, FaceRestoreSampler] = {}

    # ------------------------------------------------------------------ cached parts
    def sampler(
        self, config: str, method: str, steps: Optional[int] = None, solver: Optional[str] = None
    ) -> FaceRestoreSampler:
        """The sampler of ``config`` with ``sampler.method=method`` and the command line's ``--steps`` /
        ``--solver`` (None: the config's), built on first request, then reused."""
        path = resolve_path(config)
        key = (str(Path(path).resolve()), method, steps, solver, self.overrides)
        if key not in self._samplers:
            overrides = steps_overrides(path, list(self.overrides) + [f"sampler.method={method}"], steps, solver)
            self._samplers[key] = FaceRestoreSampler.from_config(path, overrides, device=self.device)
        return self._samplers[key]

    @property
    def cached(self) -> List[tuple]:
        """The (config, method, steps, solver, overrides) of the samplers built so far."""
        return list(self._samplers)

    def detector(self):
        """The whole-photo face detector (``faces.detection.build_detector``, built on first use)."""
        if self._detector is None:
            name, weights, min_face_size = self._detector_args
            self._detector = build_detector(
                name,
                None if weights is None else resolve_path(weights),
                device=self.device,
                min_face_size=min_face_size,
            )
        return self._detector

    # ------------------------------------------------------------------ restoring
    def restore_file(
        self, path: os.PathLike | str, *, name: Optional[str] = None, alpha: str = "keep", **settings
    ) -> PhotoReport:
        """Restore one file. Raises :class:`InputSkip` for a file the command line would skip (use
        :func:`skip_message`), ``ConfigError``/``CheckpointError``/``ValueError`` for bad settings.
        ``name`` (default: the file's name) gives the key; ``settings``: those of :meth:`restore_loaded`."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"restore_file takes a file path, got {type(path).__name__}: use restore_image (or "
                "inference.api.restore) for pixels in memory"
            )
        path = Path(path)
        return self.restore_loaded(load_image(path, MIN_SIDE, MAX_SIDE, alpha), name or path.name, **settings)

    def restore_image(
        self, pixels: np.ndarray, *, name: str = "image.png", orientation: int = 1, alpha: str = "keep", **settings
    ) -> PhotoReport:
        """Restore decoded pixels (HxW or HxWxC RGB(A), uint8 / uint16 / float in [0, 1]) as the file
        ``name`` holding them, stored with EXIF ``orientation``, would be restored (:meth:`restore_file`)."""
        img, facts = from_pixels(apply_orientation(np.asarray(pixels), orientation), orientation, alpha, Path(name))
        return self.restore_loaded(sized_image(img, facts, MIN_SIDE, MAX_SIDE), name, **settings)

    def restore_loaded(
        self,
        loaded: LoadedImage,
        name: str,
        *,
        config: str = DEFAULT_CONFIG,
        method: str = "dynfacerestore",
        eta: str | float | None = None,
        seed: int = 0,
        aligned: bool = False,
        upscale: float = 1.0,
        on_step: Optional[StepCallback] = None,
        steps: Optional[int] = None,
        solver: Optional[str] = None,
    ) -> PhotoReport:
        """Restore a read image whose key (seeds) is the stem of ``name``.

        ``eta``: None (the config's), ``"auto"`` or a number in [0, 1]. ``on_step(face, faces, nfe)`` is
        called after every UNet evaluation and once before each face."""
        if eta is not None:
            parse_eta(eta)
        if upscale <= 0:
            raise ValueError(f"upscale must be positive, got {upscale}")
        sampler = self.sampler(config, method, steps, solver)
        key = Path(name).stem
        if aligned:
            return self._restore_aligned(sampler, loaded, name, key, eta, seed, on_step)
        return self._restore_whole(sampler, loaded, name, key, eta, seed, upscale, on_step)

    def _restore_aligned(self, sampler, loaded: LoadedImage, name, key, eta, seed, on_step) -> PhotoReport:
        square = square_aligned(loaded)
        prepared = prepare_aligned(square, sampler.resolution)
        face = self._restore_face(sampler, prepared.image, 0, 1, image_seed(seed, key), eta, on_step)
        result, facts = aligned_result(square.image, face.result, prepared.image, sampler.cfg.paste)
        face.info.update(facts)
        before = square.image if square.image.shape[0] > sampler.resolution else prepared.image  # at the result's size
        return PhotoReport(
            name,
            key,
            loaded.image,
            before,
            result,
            [face],
            True,
            sampler.method,
            list(prepared.notes),
            facts=square.facts,
        )

    def _restore_whole(self, sampler, loaded: LoadedImage, name, key, eta, seed, upscale, on_step) -> PhotoReport:
        detector = self.detector()
        faces: List[FaceReport] = []

        def restore_fn(crops: List[np.ndarray]) -> List[np.ndarray]:
            for k, crop in enumerate(crops):
                faces.append(self._restore_face(sampler, crop, k, len(crops), image_seed(seed, key, k), eta, on_step))
            return [f.result for f in faces]

        whole = restore_whole_image(loaded.image, detector, restore_fn, sampler.resolution, upscale, sampler.cfg.paste)
        for face, box, lms, pasted in zip(faces, whole.faces.boxes, whole.faces.landmarks, whole.pastes):
            face.info.update(box=[float(v) for v in box], landmarks=np.asarray(lms).tolist(), **paste_facts(pasted))
        notes = list(loaded.notes)
        if not faces:
            notes.append(no_face_note(detector.name, self._detector_args[2]))
        return PhotoReport(
            name,
            key,
            loaded.image,
            bicubic_upsample(loaded.image, upscale),
            whole.image,
            faces,
            False,
            sampler.method,
            notes,
            detector.name,
            loaded.facts,
        )

    def _restore_face(
        self,
        sampler: FaceRestoreSampler,
        lq: np.ndarray,
        index: int,
        total: int,
        seed: int,
        eta,
        on_step: Optional[StepCallback],
    ) -> FaceReport:
        snapshots: List[Tuple[int, torch.Tensor]] = []

        def step(state: SamplerStep) -> None:
            snapshots.append((state.t, state.x0[0].float().cpu()))
            if on_step is not None:
                on_step(index, total, len(snapshots))

        if on_step is not None:
            on_step(index, total, 0)
        start = time.perf_counter()
        out = sampler.restore(img2tensor(lq), [seed], eta=eta, callback=step)
        seconds = time.perf_counter() - start
        result = tensor2img(out.images[0])
        levels, gmap, source = intermediates(out, 0)
        picks = sorted({round(k * (len(snapshots) - 1) / (X0_TILES - 1)) for k in range(X0_TILES)}) if snapshots else []
        x0_steps = [(snapshots[k][0], tensor2img(snapshots[k][1])) for k in picks]
        tiles = intermediate_tiles(lq, result, levels, gmap, source)
        tiles[-1:-1] = [(f"x0 t={t}", img) for t, img in x0_steps]  # before the result tile
        info = dict(sample_info(out, 0), seed=seed, seconds=seconds)
        return FaceReport(index, lq, result, info, levels, gmap, x0_steps, make_strip(tiles))
