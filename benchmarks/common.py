"""Shared pieces of the benchmarks: random-weight setups at the real layouts, timing, memory, output.

:func:`make_setup` writes random-weight checkpoints and a sampling config from the scale's real one (512 px:
configs/sample/dynfacerestore_ffhq512.yaml, 64 px: the demo config), with a constant SDE
(:func:`set_sde_sigma`) and a DSST table from a few real faces. :func:`interleaved` times variants
round-robin. Memory: peak RSS of a child process (CPU), ``torch.cuda.max_memory_allocated`` (CUDA).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode

from sampler import PRECISIONS, guided_x0

REPO_ROOT = Path(__file__).resolve().parents[1]
FACES_512 = Path("../shared/data/faces_hq/celebref512")
DOCS = REPO_ROOT / "docs" / "benchmarks.md"
SAMPLE_512 = REPO_ROOT / "configs/sample/dynfacerestore_ffhq512.yaml"
DSST_CONFIGS = {512: REPO_ROOT / "configs/dsst/ffhq512.yaml", 64: REPO_ROOT / "configs/dsst/demo64.yaml"}
NUM_DSST_FACES = 4

SAMPLE_64 = REPO_ROOT / "configs/sample/dynfacerestore_demo.yaml"


# ------------------------------------------------------------------------------------------ setups
def _yaml(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _node(cfg: dict) -> dict:
    return {"target": cfg["target"], "params": dict(cfg.get("params") or {})}


SAMPLE_CONFIGS = {512: SAMPLE_512, 64: SAMPLE_64}


def sample_config(resolution: int) -> dict:
    """The real sampling config of a scale (512: configs/sample/dynfacerestore_ffhq512.yaml, 64: the demo's)."""
    if resolution not in SAMPLE_CONFIGS:
        raise ValueError(f"benchmarks support resolution 512 or 64, got {resolution}")
    return _yaml(SAMPLE_CONFIGS[resolution])


def architectures(resolution: int) -> Dict[str, dict]:
    """``{name: {target, params}}`` for unet, restorer, sde, tm, rm, dgsa of the scale's sampling config."""
    sample = sample_config(resolution)
    nodes = {name: _node(sample[key]) for name, key in (("unet", "model"), ("restorer", "restorer"), ("dgsa", "dgsa"))}
    for name in ("sde", "tm", "rm"):
        nodes[name] = _node(sample["dblm"][name])
    return nodes


def _shared(path: Path) -> Path:
    """A ../shared path as given (run from the repository root) or relative to the repository."""
    return path if path.exists() else REPO_ROOT / path


def default_faces(count: int) -> List[Path]:
    """The first ``count`` faces (sorted) of ../shared/data/faces_hq/celebref512; a clear error if absent."""
    from utils.image_io import list_images

    root = _shared(FACES_512)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark faces not found: {FACES_512} (the shared data folder beside the repo)")
    faces = list_images(root, recursive=True)[:count]
    if len(faces) < count:
        raise FileNotFoundError(f"{root}: need {count} faces, found {len(faces)}")
    return faces


VAL_64 = Path("../shared/data/faces_hq/celeba128_val.txt")
DEGRADATION = REPO_ROOT / "configs/degradation/difface_blind.yaml"
DEGRADATION_64 = REPO_ROOT / "configs/degradation/demo64.yaml"


def thirds_testset(out_dir: Path, resolution: int, count: int) -> Path:
    """``data.make_testset --severity-thirds`` (seed 0) on ``count`` real faces under ``out_dir``: celebref512 faces
    round-robin over identities at 512 px, the celeba validation faces with the demo degradation at 64 px."""
    from data.make_testset import make_testset
    from utils.image_io import list_images

    out = Path(out_dir) / f"thirds_{resolution}_{count}"
    if (out / "degradations.json").is_file():
        return out
    if resolution == 64:
        make_testset(_shared(VAL_64), out, 64, 0, DEGRADATION_64, severity_thirds=True, limit=count)
        return out
    root = _shared(FACES_512)
    natural = lambda path: (len(path.stem), path.stem)  # noqa: E731  0, 1, ..., 9, 10, ...
    identities = [sorted(list_images(d), key=natural) for d in sorted(p for p in root.iterdir() if p.is_dir())]
    links = Path(out_dir) / f"faces_{resolution}_{count}"
    links.mkdir(parents=True, exist_ok=True)
    chosen = []
    for rank in range(max(len(files) for files in identities)):
        for files in identities:
            if rank < len(files) and len(chosen) < count:
                link = links / f"{files[rank].parent.name}_{files[rank].name}"
                if not link.exists():
                    link.symlink_to(files[rank].resolve())
                chosen.append(link.name)
    (links / "list.txt").write_text("\n".join(chosen) + "\n")
    make_testset(links / "list.txt", out, resolution, 0, DEGRADATION, severity_thirds=True)
    return out


def _digest(node: dict) -> str:
    """Short hash of an architecture node: cached checkpoints are reused only for the same layout."""
    return hashlib.sha1(json.dumps(node, sort_keys=True).encode()).hexdigest()[:10]


def _save_random(node: dict, path: Path, seed: int) -> dict:
    """Random-weight checkpoint of ``node`` at ``path`` (reused when it exists); the node with ckpt_path."""
    from utils.config import instantiate

    if not path.is_file():
        torch.manual_seed(seed)
        model = instantiate(node)
        with torch.no_grad():  # zero-initialised output layers would make every output 0
            for p in model.parameters():
                if p.ndim > 1 and not p.any():
                    p.normal_(0.0, 0.02)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: concurrent benchmark processes may share a --workdir
    return dict(node, ckpt_path=str(path))


def dsst_table(out_dir: Path, resolution: int, faces: Sequence[Path]) -> Path:
    """Build (once) the benchmark DSST table at ``resolution`` from ``faces`` with the scale's DSST config
    (configs/dsst/ffhq512.yaml or demo64.yaml: grid, schedule, tau calibration); returns its path."""
    from models.dsst_build import build_from_config

    path = Path(out_dir) / f"dsst_{resolution}.json"
    if not path.is_file():
        listing = Path(out_dir) / f"dsst_faces_{resolution}.txt"
        listing.write_text("\n".join(str(Path(f).resolve()) for f in faces) + "\n")
        build_from_config(listing, DSST_CONFIGS[resolution], resolution).save(path)
    return path


def make_setup(
    out_dir: Path,
    resolution: int,
    faces: Sequence[Path],
    respacing: str,
    method: str = "dynfacerestore",
    guidance: str = "dgsa",
    sampler: Optional[dict] = None,
) -> Path:
    """Random-weight checkpoints (cached in ``out_dir``), the DSST table and a sampling config at ``respacing``, with
    ``sampler`` overriding the sampler section; returns the config path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = architectures(resolution)
    ck = {
        name: _save_random(node, out_dir / f"{name}_{resolution}_{_digest(node)}.pth", seed)
        for seed, (name, node) in enumerate(arch.items())
    }
    sde = ck["sde"]
    sde["params"] = dict(sde["params"], log_sigma_init=0.0)  # sigma_hat set per face: set_sde_sigma
    real = sample_config(resolution)
    diffusion = real["diffusion"]
    diffusion["params"]["timestep_respacing"] = respacing
    sampler_section = dict(real["sampler"], method=method, fixed_start_index=difface_start(respacing))
    sampler_section["guidance"] = dict(real["sampler"]["guidance"], mode=guidance)
    cfg = {
        "resolution": resolution,
        "diffusion": diffusion,
        "model": ck["unet"],
        "restorer": ck["restorer"],
        "dblm": dict(real["dblm"], sde=sde, tm=ck["tm"], rm=ck["rm"]),
        "dsst": {"table_path": str(dsst_table(out_dir, resolution, faces))},
        "dgsa": ck["dgsa"],
        "sampler": dict(sampler_section, **(sampler or {})),
    }
    path = out_dir / f"sample_{resolution}_{method}_{guidance}_{respacing}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def difface_start(respacing: str, t_start: int = 400) -> int:
    """Respaced index of DifFace's fixed start t = 400 (100 of ddim250): the first index with timestep >= t."""
    from models.respace import space_timesteps

    steps = sorted(space_timesteps(1000, respacing))
    return next(i for i, t in enumerate(steps) if t >= t_start)


def guide_x0(guide, x0_hat: torch.Tensor, index: int, t_orig: torch.Tensor, fresh: Sequence[int]) -> torch.Tensor:
    """The sampler's guided x0 of a whole batch at respaced ``index`` (closed form, then the scale s; new DGSA
    maps for the positions ``fresh``), as ``sampler.FaceRestoreSampler._sample`` takes it."""
    idx = torch.arange(x0_hat.shape[0], device=x0_hat.device)
    x0_tilde = guide.closed_form(x0_hat, idx, index)
    return guided_x0(x0_hat, x0_tilde, guide.scale(x0_hat, x0_tilde, idx, index, t_orig, fresh))


def guided_step(
    sampler, guide, model, x_t: torch.Tensor, t: torch.Tensor, eta, noise=None, fresh: Sequence[int] = ()
) -> torch.Tensor:
    """One DDIM step of a whole batch at the respaced index ``t`` (one value) with the sampler's x0: the
    model's, guided by :func:`guide_x0` unless ``guide`` is None."""
    x0 = sampler.diffusion.model_x0(model, x_t, t)[2]
    if guide is not None:
        x0 = guide_x0(guide, x0, int(t[0]), sampler.timestep_map[t], fresh)
    return sampler.diffusion.ddim_update(x_t, x0, t, eta, noise)


def set_sde_sigma(sampler, sigma_px: float) -> None:
    """Make the (constant) SDE of a DynFaceRestore sampler return ``sigma_px`` for every face."""
    last = sampler.dblm.sde.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(math.log(max(float(sigma_px), 1e-6)))


def degraded_faces(faces: Sequence[Path], resolution: int, sigma_512: Sequence[float]) -> torch.Tensor:
    """Real faces at ``resolution`` blurred by sigma_512[i] (512-px units): (N, 3, R, R) in [-1, 1]."""
    from data.blur import gaussian_blur
    from models.dsst_build import load_faces

    x = load_faces(list(faces), resolution)
    sig = torch.tensor([s * resolution / 512.0 for s in sigma_512], dtype=torch.float32)
    return gaussian_blur(x, sig).clamp(-1, 1)


# ------------------------------------------------------------------------------------------ timing
def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(
    variants: Dict[str, Callable[[], object]], repeats: int, warmup: int = 0, device="cpu"
) -> Dict[str, List[float]]:
    """Seconds of every call, variants run round-robin ``repeats`` times after ``warmup`` rounds."""
    times: Dict[str, List[float]] = {name: [] for name in variants}
    for r in range(warmup + repeats):
        for name, fn in variants.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


def dispatched_ops(fn: Callable[[], object]) -> int:
    """How many ATen operations other than views one call of ``fn`` dispatches. On a GPU each launches at
    least one kernel; where a step is launch-bound (small images, batch 1) its time follows this count."""
    with _OpCounter() as counter:
        fn()
    return counter.count


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> str:
    """``min-max`` of the repeats, for the tables."""
    return f"{min(values):.3g}-{max(values):.3g}" if len(values) > 1 else "-"


# ------------------------------------------------------------------------------------------ memory
def peak_rss_mb() -> float:
    """Peak resident set of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Resident set of this process now, MiB (Linux /proc; the peak if /proc is unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def run_child(module: str, args: Sequence[str], timeout: float = 3600) -> dict:
    """Run ``python -m module args`` in a fresh process; it prints one JSON line last, returned here."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ output
def environment(device="cpu") -> Dict[str, str]:
    dev = torch.device(device)
    return {
        "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
        + (f", {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else ""),
        "torch": torch.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(
    title: str,
    argv: Sequence[str],
    tables: Sequence[str],
    notes: Sequence[str] = (),
    device="cpu",
    write: bool = False,
    path: Path = DOCS,
) -> str:
    """The markdown section of one run (command, machine, torch, date, notes, tables); appended with ``write``."""
    env = environment(device)
    head = [
        f"## {title}",
        "",
        f"- command: `python -m {' '.join(argv)}`",
        f"- machine: {env['machine']}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"- torch {env['torch']}, {env['date']}",
    ]
    head += [f"- {n}" for n in notes]
    text = "\n".join(head) + "\n\n" + "\n\n".join(tables) + "\n"
    print(text)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    return text


def common_args(parser, resolution: int = 512, repeats: int = 3) -> None:
    """Arguments every script takes."""
    parser.add_argument("--resolution", type=int, default=resolution, choices=(512, 64))
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--warmup", type=int, default=0, help="untimed rounds before the timed ones")
    parser.add_argument(
        "--precision",
        choices=sorted(PRECISIONS),
        default="fp32",
        help="the samplers' UNet trunk dtype (half precision on CUDA only)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workdir", default=None, help="checkpoint cache (default: a temp dir per run)")
    parser.add_argument("--note", action="append", default=[], help="line added to the report (repeatable)")
    parser.add_argument("--write", action="store_true", help="append the report to docs/benchmarks.md")
    parser.add_argument("--out", default=str(DOCS), help="markdown file for --write")


def workdir(args):
    """A context manager yielding the checkpoint folder (a str): ``--workdir`` or a temporary one."""
    import contextlib
    import tempfile

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        return contextlib.nullcontext(str(args.workdir))
    return tempfile.TemporaryDirectory(prefix="dfr_bench_")
