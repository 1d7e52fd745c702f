"""The inference loop of ``inference_difface.py`` (docs/method.md sections 9 and 11).

Each rank restores ``files[rank::world]`` (those without output and record, unless ``--no-skip_existing``)
in batches of ``--bs``: aligned faces directly, whole photos face by face (detect, align, restore, paste back).
Each result goes to ``<out>/restored/<key>.png`` as its input file was, then its record
``<out>/records/<key>.json`` (:mod:`inference.report`); ``seconds`` is the batch's sampling time shared in
proportion to NFE. Exit status: 2 for a start-up error (one line, before any image is read); 1 when no
attempted image was ever restored into the folder, or the OS refused a write; else 0.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

from faces.align import AlignedFaces, detect_and_align
from faces.detection import build_detector
from faces.identity import FaceIdentity
from faces.paste import FacePaste, face_pastes, paste_aligned, paste_decision, paste_faces
from inference.args import UsageError, config_overrides, parse_args
from inference.inputs import (
    InputItem,
    InputSkip,
    LoadedImage,
    fit_reference,
    image_seed,
    list_inputs,
    load_image,
    match_hq,
    prepare_aligned,
    shard,
    square_aligned,
)
from inference.report import (
    decisions_line,
    face_decisions,
    read_records,
    record_path,
    records_dir,
    write_json,
    write_report,
)
from inference.strip import draw_detections, make_strip, strip_tiles
from sampler import FaceRestoreSampler, SampleOutput, parse_eta
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.distributed import DistInfo, all_gather_object, barrier, cleanup_distributed, init_distributed
from utils.image_file import project_gray
from utils.image_io import img2tensor, read_image, tensor2img, to_uint8, write_failure, write_image
from utils.metrics import LPIPS_WEIGHTS_ENV, LPIPSMetric, compute_metrics
from utils.model_factory import resolve_path

EXIT_OK, EXIT_NOTHING_RESTORED, EXIT_STARTUP = 0, 1, 2
EXIT_WRITE_ERROR = 1
IMAGE_OUTPUT_FOLDERS = ("restored", "restored_faces", "intermediates")  # the folders of <out> that hold images
STARTUP_ERRORS = (UsageError, ConfigError, CheckpointError, FileNotFoundError, ValueError)


@dataclass
class Context:
    args: object
    info: DistInfo
    sampler: FaceRestoreSampler
    out_dir: Path
    detector: Optional[object] = None
    lpips: Optional[LPIPSMetric] = None
    identity: Optional[FaceIdentity] = None

    def log(self, msg: str) -> None:
        prefix = f"[rank {self.info.rank}] " if self.info.is_distributed else ""
        tqdm.write(prefix + msg, file=sys.stdout)
        sys.stdout.flush()

    def log_main(self, msg: str) -> None:
        if self.info.is_main:
            self.log(msg)


def _is_rank0_env() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def start(args, detector=None) -> Context:
    """Build everything that can fail before any image is read (raises one of STARTUP_ERRORS)."""
    if args.eta is not None:
        parse_eta(args.eta)
    for flag, path in (("-i", args.input), ("-i_hq", args.input_hq)):
        if path is not None and not Path(path).exists():
            raise UsageError(f"{flag}: no such file or folder: {path}")
    args.overrides = config_overrides(args)
    info = init_distributed()
    with warnings.catch_warnings(record=True) as caught:  # e.g. fp16 on the CPU: said once, as one plain line
        warnings.simplefilter("always")
        sampler = FaceRestoreSampler.from_config(
            resolve_path(args.config), args.overrides, device=info.device, precision=args.precision
        )
    ctx = Context(args, info, sampler, Path(args.output))
    for warning in caught:
        ctx.log_main(f"warning: {warning.message}")
    if not args.aligned:
        ctx.detector = detector or build_detector(
            args.detector, resolve_path(args.detection_weights), device=info.device, min_face_size=args.min_face_size
        )
        ctx.log_main(f"face detector: {ctx.detector.name}")
    if args.input_hq is not None:
        ctx.identity = FaceIdentity()
        weights = args.lpips_weights or os.environ.get(LPIPS_WEIGHTS_ENV)
        if weights:
            ctx.lpips = LPIPSMetric(args.lpips_net, weights, device=info.device)
        else:
            ctx.log_main(f"note: LPIPS not computed (give --lpips_weights or ${LPIPS_WEIGHTS_ENV})")
    return ctx


def main(argv: Optional[Sequence[str]] = None, detector=None) -> int:
    """Entry point; ``detector`` replaces the one --detector names (tests)."""
    # OpenCV's own multi-line decoder complaints about broken files: our one-line message replaces them
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        args = parse_args(None if argv is None else list(argv))
        ctx = start(args, detector)
    except STARTUP_ERRORS as err:
        if _is_rank0_env():
            print(f"error: {_first_line(err)}", file=sys.stderr, flush=True)
        cleanup_distributed()
        return EXIT_STARTUP
    try:
        return run(ctx)
    except OSError as err:  # a full disk or a read-only folder (reads fail as skips): what is written stays
        print(f"error: {write_failure(err.filename or ctx.out_dir, err)}", file=sys.stderr, flush=True)
        return EXIT_WRITE_ERROR
    finally:
        cleanup_distributed()


# ---------------------------------------------------------------------------------------------- the loop
def run(ctx: Context) -> int:
    args, info = ctx.args, ctx.info
    items, messages = list_inputs(args.input, args.recursive, exclude=_output_folders(ctx))
    messages += match_hq(items, args.input_hq, args.recursive)
    for msg in messages:
        ctx.log_main(msg)
    if not items:
        ctx.log_main(f"no image files found in {args.input}")
    mine = shard(items, info.rank, info.world_size)
    todo = [it for it in mine if not (args.skip_existing and _done(ctx, it))]
    skipped = len(mine) - len(todo)
    if skipped:
        ctx.log(
            f"skipped {skipped} of {len(mine)} file(s) already restored (output and record exist; "
            f"--no-skip_existing to redo them)"
        )
    restored = _restore_aligned(ctx, todo) if args.aligned else _restore_whole(ctx, todo)
    stats = all_gather_object({"attempted": len(todo), "restored": restored, "skipped": skipped})
    barrier()
    total = {k: sum(s[k] for s in stats) for k in stats[0]}
    if info.is_main:
        table = write_report(ctx.out_dir)
        ctx.log(
            f"restored {total['restored']} of {total['attempted']} attempted image(s), skipped "
            f"{total['skipped']} already done; results in {ctx.out_dir}"
        )
        if not args.aligned:
            ctx.log(decisions_line(face_decisions(read_records(ctx.out_dir))))
        ctx.log(table)
    nothing = total["attempted"] > 0 and total["restored"] == 0 and total["skipped"] == 0
    return EXIT_NOTHING_RESTORED if nothing else EXIT_OK


def _output_folders(ctx: Context) -> List[Path]:
    """What the input listing leaves out: the output folder, or, when it is the input folder itself, the
    folders the run writes into it."""
    if ctx.out_dir.resolve() != Path(ctx.args.input).resolve():
        return [ctx.out_dir]
    return [ctx.out_dir / name for name in IMAGE_OUTPUT_FOLDERS] + [records_dir(ctx.out_dir)]


def _done(ctx: Context, item: InputItem) -> bool:
    return _output_path(ctx, item.key).is_file() and record_path(ctx.out_dir, item.key).is_file()


def _output_path(ctx: Context, key: str) -> Path:
    return ctx.out_dir / "restored" / f"{key}.png"


def _load(ctx: Context, item: InputItem) -> Optional[LoadedImage]:
    try:
        loaded = load_image(item.path, ctx.args.min_side, ctx.args.max_side, ctx.args.alpha)
    except InputSkip as err:
        ctx.log(f"{item.path}: skipped: {err}")
        return None
    if ctx.args.aligned:  # the square face; _run_aligned_batch brings it to the model's resolution
        loaded = square_aligned(loaded)
    if loaded.notes:
        ctx.log(f"{item.path}: converted: " + "; ".join(loaded.notes))
    return loaded


def _progress(ctx: Context, total: int):
    return tqdm(
        total=total, disable=None if ctx.info.is_main else True, desc="restoring", unit="img", dynamic_ncols=True
    )  # None: no bar unless stderr is a terminal (a log gets the notes only)


def _loaded_inputs(ctx: Context, todo: List[InputItem], bar) -> Iterator[Tuple[InputItem, LoadedImage]]:
    """(item, loaded image) for each readable item of ``todo``; an unreadable one is logged by ``_load``
    and counted as done on the progress bar."""
    for item in todo:
        loaded = _load(ctx, item)
        if loaded is None:
            bar.update(1)
        else:
            yield item, loaded


def _restore_aligned(ctx: Context, todo: List[InputItem]) -> int:
    restored = 0
    batch: List[tuple] = []
    with _progress(ctx, len(todo)) as bar:
        for item, loaded in _loaded_inputs(ctx, todo, bar):
            batch.append((item, loaded))
            if len(batch) == ctx.args.bs:
                restored += _run_aligned_batch(ctx, batch)
                bar.update(len(batch))
                batch = []
        if batch:
            restored += _run_aligned_batch(ctx, batch)
            bar.update(len(batch))
    return restored


def _timed_restore(ctx: Context, images: List[np.ndarray], seeds: List[int]):
    start = time.perf_counter()
    out = ctx.sampler.restore(img2tensor(images), seeds, eta=ctx.args.eta)
    elapsed = time.perf_counter() - start
    nfe = out.nfe.double()
    share = (nfe / nfe.sum()) if float(nfe.sum()) > 0 else torch.full_like(nfe, 1.0 / len(images))
    return out, tensor2img(out.images), (share * elapsed).tolist()


def _run_aligned_batch(ctx: Context, batch: List[tuple]) -> int:
    """Restore a batch of square aligned faces at the model's resolution R; a face larger than R is merged
    back at its own size by the paste rule (``faces.paste.paste_aligned``), with its paste facts recorded."""
    seeds = [image_seed(ctx.args.seed, item.key) for item, _ in batch]
    crops = [prepare_aligned(loaded, ctx.sampler.resolution).image for _, loaded in batch]
    out, results, seconds = _timed_restore(ctx, crops, seeds)
    for j, (item, loaded) in enumerate(batch):
        result, facts = aligned_result(loaded.image, results[j], crops[j], ctx.sampler.cfg.paste)
        info = dict(sample_info(out, j), seed=seeds[j], seconds=seconds[j], **facts)
        write_image(_output_path(ctx, item.key), loaded.output(result))
        if ctx.args.save_intermediates:
            save_intermediates(ctx, item.key, out, j, crops[j], results[j], seeds[j])
        metrics, notes = _metrics(ctx, item, result)
        _write_record(ctx, item, info, metrics, loaded.notes + notes)
    return len(batch)


@dataclass
class _WholeImage:
    """An unaligned image in flight: its faces wait in the queue; it is written when the last one returns."""

    item: InputItem
    loaded: LoadedImage
    faces: AlignedFaces
    restored: List[Optional[np.ndarray]]
    info: List[Optional[dict]]

    @property
    def complete(self) -> bool:
        return all(r is not None for r in self.restored)


def _restore_whole(ctx: Context, todo: List[InputItem]) -> int:
    """Detect and align the faces of each image, restore them in batches of --bs across images (the
    faces of one image may span several batches), and write each image as soon as all its faces are back."""
    restored = 0
    queue: List[tuple] = []  # (image in flight, face index)
    with _progress(ctx, len(todo)) as bar:
        for item, loaded in _loaded_inputs(ctx, todo, bar):
            faces = detect_and_align(loaded.image, ctx.detector, ctx.sampler.resolution)
            image = _WholeImage(item, loaded, faces, [None] * len(faces.crops), [None] * len(faces.crops))
            if ctx.args.save_intermediates:
                write_image(
                    ctx.out_dir / "intermediates" / f"{item.key}_detections.png",
                    draw_detections(loaded.image, faces.boxes, faces.landmarks),
                )
            queue.extend((image, k) for k in range(len(faces.crops)))
            if not faces.crops:
                restored += _finish_whole(ctx, image)
                bar.update(1)
            restored += _drain_faces(ctx, queue, bar, min_size=ctx.args.bs)  # every full batch at once
        restored += _drain_faces(ctx, queue, bar, min_size=1)  # the rest
    return restored


def _drain_faces(ctx: Context, queue: List[tuple], bar, min_size: int) -> int:
    """Restore batches of --bs faces from the front of ``queue`` (removed in place) while it holds at least
    ``min_size``; returns the number of images completed and written."""
    written = 0
    while queue and len(queue) >= min_size:
        batch = queue[: ctx.args.bs]
        del queue[: ctx.args.bs]
        finished = _run_face_batch(ctx, batch)
        written += sum(_finish_whole(ctx, image) for image in finished)
        bar.update(len(finished))
    return written


def _run_face_batch(ctx: Context, batch: List[tuple]) -> List[_WholeImage]:
    """Restore one batch of aligned faces (face k of image ``key`` seeded by (seed, key, k)); returns the
    images whose last face was in it."""
    seeds = [image_seed(ctx.args.seed, image.item.key, k) for image, k in batch]
    out, results, seconds = _timed_restore(ctx, [image.faces.crops[k] for image, k in batch], seeds)
    finished = []
    for j, (image, k) in enumerate(batch):
        image.restored[k] = results[j]
        image.info[k] = dict(sample_info(out, j), seed=seeds[j], seconds=seconds[j])
        if ctx.args.save_intermediates:
            save_intermediates(ctx, f"{image.item.key}_{k:02d}", out, j, image.faces.crops[k], results[j], seeds[j])
        if image.complete:
            finished.append(image)
    return finished


def _finish_whole(ctx: Context, image: _WholeImage) -> int:
    """Paste the restored faces back, write the image, its faces and its record."""
    item, faces = image.item, image.faces
    pastes = face_pastes(image.loaded.image, image.restored, faces.crops, faces.affines, ctx.sampler.cfg.paste)
    result = paste_faces(image.loaded.image, pastes, ctx.args.upscale)
    write_image(_output_path(ctx, item.key), image.loaded.output(result))
    for k, face in enumerate(image.restored):
        write_image(
            ctx.out_dir / "restored_faces" / f"{item.key}_{k:02d}.png",
            project_gray(face) if image.loaded.facts.gray else face,
        )
    notes = list(image.loaded.notes)
    if not faces.crops:
        notes.append(no_face_note(ctx.detector.name, ctx.args.min_face_size))
        ctx.log(f"{item.path}: {notes[-1]}")
    for k, info in enumerate(image.info):
        info.update(
            box=[float(v) for v in faces.boxes[k]], landmarks=faces.landmarks[k].tolist(), **paste_facts(pastes[k])
        )
    metrics, more = _metrics(ctx, item, result)
    summary = {
        "num_faces": len(faces.crops),
        "faces": image.info,
        "nfe": sum(f["nfe"] for f in image.info),
        "seconds": sum(f["seconds"] for f in image.info),
        "sigma_hat": None,
        "start_index": None,
        "start_t": None,
        "eta": None,
    }
    _write_record(ctx, item, summary, metrics, notes + more)
    return 1


# ---------------------------------------------------------------------------------------------- outputs
def aligned_result(square: np.ndarray, restored: np.ndarray, crop: np.ndarray, paste_cfg) -> Tuple[np.ndarray, dict]:
    """The result of an aligned face ``square`` restored from its model-size ``crop``, and its record entries: the
    restoration itself when the face is no larger than the model, else the face at its own size merged by the paste
    rule from the restoration as its 8-bit file holds it (``faces.paste.paste_aligned``) with :func:`paste_facts`."""
    if square.shape[0] <= restored.shape[0]:
        return restored, {}
    result, pasted = paste_aligned(square, to_uint8(restored) / 255.0, crop, paste_cfg)
    return result, paste_facts(pasted)


def paste_facts(face: FacePaste) -> dict:
    """A face's record entries of its paste-back: ``paste_weights`` (w_c, w_h; None for classic),
    ``estimate`` (``faces.paste.FaceEstimate``; None for classic) and ``decision``."""
    return {
        "paste_weights": None if face.weights is None else list(face.weights),
        "estimate": None if face.estimate is None else vars(face.estimate),
        "decision": paste_decision(face.weights),
    }


def sample_info(out: SampleOutput, j: int) -> dict:
    """JSON-ready facts of image ``j`` of a sampler output."""
    info = {
        "start_index": int(out.start_index[j]),
        "start_t": int(out.start_t[j]),
        "nfe": int(out.nfe[j]),
        "eta": float(out.eta[j]),
        "sigma_hat": None if out.sigma_hat is None else float(out.sigma_hat[j]),
    }
    if out.sigmas is not None:
        info["sigmas"] = [float(v) for v in out.sigmas[j]]
    if out.level_t is not None:
        info["level_t"] = [int(v) for v in out.level_t[j]]
    return info


def intermediates(
    out: SampleOutput, j: int
) -> Tuple[List[Tuple[float, np.ndarray]], Optional[np.ndarray], Optional[np.ndarray]]:
    """Image ``j``'s blurred levels as (sigma, image), its guidance map, and the diffused source when
    there are no levels (DifFace, RM0), from a sampler output (numpy, [0, 1])."""
    levels = (
        []
        if out.levels is None
        else [(float(out.sigmas[j, k]), tensor2img(level[j])) for k, level in enumerate(out.levels)]
    )
    gmap = None if out.guidance_map is None else out.guidance_map[j, 0].float().cpu().numpy()
    source = None if out.source is None or levels else tensor2img(out.source[j])
    return levels, gmap, source


def intermediate_tiles(
    lq: np.ndarray,
    result: np.ndarray,
    levels: List[Tuple[float, np.ndarray]],
    gmap: Optional[np.ndarray],
    source: Optional[np.ndarray],
) -> list:
    """The strip's tiles (:func:`inference.strip.strip_tiles`) from :func:`intermediates`' parts."""
    return strip_tiles(
        lq,
        result,
        levels=[img for _, img in levels] or None,
        sigmas=[sigma for sigma, _ in levels] or None,
        guidance_map=gmap,
        source=source,
    )


def save_intermediates(
    ctx: Context, name: str, out: SampleOutput, j: int, lq: np.ndarray, result: np.ndarray, seed: int
) -> None:
    """``<out>/intermediates/<name>.png`` (strip, :mod:`inference.strip`) and ``<name>.json``."""
    tiles = intermediate_tiles(lq, result, *intermediates(out, j))
    folder = ctx.out_dir / "intermediates"
    write_image(folder / f"{name}.png", make_strip(tiles))
    write_json(
        folder / f"{name}.json",
        dict(sample_info(out, j), key=name, method=ctx.sampler.method, seed=seed, tiles=[label for label, _ in tiles]),
    )


def no_face_note(detector_name: str, min_face_size: int) -> str:
    """The note of a whole photo in which no face was found (its record, the log, the web page)."""
    return (
        f"no face detected ({detector_name}, min face size {min_face_size} px): "
        "nothing restored, the upsampled image is the result"
    )


def _metrics(ctx: Context, item: InputItem, result: np.ndarray):
    """Full-reference metrics against the HQ reference (None without one) and notes about it."""
    if item.hq is None:
        return None, []
    try:
        ref = read_image(item.hq)
    except ValueError as err:
        ctx.log(f"{item.path}: note: HQ reference unusable ({err}); no metrics")
        return None, [f"HQ reference unusable: {err}"]
    ref, note = fit_reference(ref, result.shape[:2])
    return compute_metrics(result, ref, ctx.lpips, identity=ctx.identity), ([note] if note else [])


def _write_record(ctx: Context, item: InputItem, info: dict, metrics: Optional[dict], notes: List[str]) -> None:
    args = ctx.args
    record = dict(
        info,
        key=item.key,
        file=str(item.path),
        hq=None if item.hq is None else str(item.hq),
        output=str(_output_path(ctx, item.key).relative_to(ctx.out_dir)),
        method=ctx.sampler.method,
        metrics=metrics,
        notes=notes,
        aligned=bool(args.aligned),
        config=str(args.config),
        overrides=args.overrides,
        eta_arg=args.eta,
        rank=ctx.info.rank,
        world_size=ctx.info.world_size,
    )
    write_json(record_path(ctx.out_dir, item.key), record)
