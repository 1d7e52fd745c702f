"""Shared pieces of the benchmark scripts: random-weight setups at the real layouts, timing, memory, output.

Setups. :func:`make_setup` writes random-weight checkpoints of every network of a sampling config and a
sampling config that points at them, so the samplers run the real code at the real sizes without the
public or trained weights (timings do not depend on the weight values):

* 512 px: the UNet prior and RM0 SwinIR of configs/sample/dynfacerestore_ffhq512.yaml, the SDE/TM/RM of
  configs/train/train_SDE.yaml, train_DBLM_TM.yaml, train_DBLM_RM.yaml, the DGSA of
  configs/training/uncertainty.yaml when it exists (else ``models.dgsa.DGSA``'s defaults).
* 64 px (demo scale): configs/sample/dynfacerestore_demo*.yaml when it exists; otherwise the SDE/TM/RM of
  configs/train/*_demo64.yaml, the TM's SwinIR layout as RM0, and :data:`DEMO_UNET` as the prior.

The SDE is made constant: zero output weights and bias log(sigma), so sigma_hat = sigma exactly and a
benchmark chooses the severity of every face (:func:`set_sde_sigma`). The DSST table is built with
``models.dsst.build_table`` from a few real faces of ../shared/data/faces_hq/celebref512 (tau, schedule
and step count of configs/dsst/ffhq512.yaml, a coarser sigma grid: :data:`DSST_GRID_512`).

Timing: :func:`interleaved` runs the variants round-robin (baseline and variants alternate, so load
changes on a shared machine hit all of them alike) and the scripts report medians. Memory: on CPU the
peak resident set (``ru_maxrss``) of a child process per configuration; on CUDA
``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import copy
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

import numpy as np
import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
FACES_512 = Path("../shared/data/faces_hq/celebref512")
DOCS = REPO_ROOT / "docs" / "benchmarks.md"
SAMPLE_512 = REPO_ROOT / "configs/sample/dynfacerestore_ffhq512.yaml"
DSST_512 = REPO_ROOT / "configs/dsst/ffhq512.yaml"
DSST_GRID_512 = np.linspace(0.0, 32.0, 33)  # sigma_512 grid of the benchmark table (step 1.0)
NUM_DSST_FACES = 4

# Demo-scale prior used only while no configs/sample/dynfacerestore_demo*.yaml exists.
DEMO_UNET = {"target": "models.unet.UNetModel",
             "params": {"image_size": 64, "in_channels": 3, "model_channels": 64, "out_channels": 6,
                        "num_res_blocks": 2, "attention_resolutions": [4, 8], "channel_mult": [1, 2, 2, 4],
                        "num_head_channels": 32, "use_scale_shift_norm": True}}
DEFAULT_DGSA = {"target": "models.dgsa.DGSA", "params": {}}


# ------------------------------------------------------------------------------------------ setups
def _yaml(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _node(cfg: dict) -> dict:
    return {"target": cfg["target"], "params": dict(cfg.get("params") or {})}


def _find_target(tree, target: str) -> Optional[dict]:
    """First ``{target: ..., params: ...}`` node with this target anywhere in a YAML tree."""
    if isinstance(tree, dict):
        if tree.get("target") == target:
            return _node(tree)
        for value in tree.values():
            found = _find_target(value, target)
            if found is not None:
                return found
    return None


def _demo_sample_config() -> Optional[Path]:
    found = sorted((REPO_ROOT / "configs/sample").glob("dynfacerestore_demo*.yaml"))
    return found[0] if found else None


def architectures(resolution: int) -> Dict[str, dict]:
    """``{name: {target, params}}`` for unet, restorer, sde, tm, rm, dgsa at 512 or 64 px (module docstring)."""
    if resolution == 512:
        sample = _yaml(SAMPLE_512)
        nodes = {"unet": _node(sample["model"]), "restorer": _node(sample["restorer"])}
        for name, file in (("sde", "train_SDE"), ("tm", "train_DBLM_TM"), ("rm", "train_DBLM_RM")):
            nodes[name] = _node(_yaml(REPO_ROOT / f"configs/train/{file}.yaml")["model"])
        uncertainty = REPO_ROOT / "configs/training/uncertainty.yaml"
        dgsa = _find_target(_yaml(uncertainty), "models.dgsa.DGSA") if uncertainty.is_file() else None
        nodes["dgsa"] = dgsa or copy.deepcopy(DEFAULT_DGSA)
        return nodes
    if resolution == 64:
        demo = _demo_sample_config()
        if demo is not None:
            sample = _yaml(demo)
            nodes = {name: _node(sample[key]) for name, key in (("unet", "model"), ("restorer", "restorer"))}
            for name in ("sde", "tm", "rm"):
                nodes[name] = _node(sample["dblm"][name])
            nodes["dgsa"] = _node(sample["dgsa"]) if sample.get("dgsa") else copy.deepcopy(DEFAULT_DGSA)
            return nodes
        nodes = {"unet": copy.deepcopy(DEMO_UNET)}
        for name, file in (("sde", "train_SDE_demo64"), ("tm", "train_DBLM_TM_demo64"), ("rm", "train_DBLM_RM_demo64")):
            nodes[name] = _node(_yaml(REPO_ROOT / f"configs/train/{file}.yaml")["model"])
        nodes["restorer"] = {"target": "models.swinir.SwinIR",
                             "params": dict(nodes["tm"]["params"]["swinir"], in_chans=3)}
        nodes["dgsa"] = copy.deepcopy(DEFAULT_DGSA)
        return nodes
    raise ValueError(f"benchmarks support resolution 512 or 64, got {resolution}")


def default_faces(count: int) -> List[Path]:
    """The first ``count`` faces (sorted) of ../shared/data/faces_hq/celebref512; a clear error if absent."""
    from utils.image_io import list_images

    root = FACES_512 if FACES_512.exists() else REPO_ROOT / FACES_512
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark faces not found: {FACES_512} (the shared data folder beside the repo)")
    faces = list_images(root, recursive=True)[:count]
    if len(faces) < count:
        raise FileNotFoundError(f"{root}: need {count} faces, found {len(faces)}")
    return faces


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
    """Build (once) the benchmark DSST table at ``resolution`` from ``faces``; returns its path."""
    from models.dsst import build_table, convert_sigma

    path = Path(out_dir) / f"dsst_{resolution}.json"
    if not path.is_file():
        cfg = _yaml(DSST_512)
        table = build_table(list(faces), convert_sigma(DSST_GRID_512, 512, resolution), resolution=resolution,
                            noise_schedule=cfg["noise_schedule"], num_steps=cfg["num_steps"], tau=cfg["tau"],
                            batch_size=len(faces))
        table.save(path)
    return path


def make_setup(out_dir: Path, resolution: int, faces: Sequence[Path], respacing: str,
               method: str = "dynfacerestore", guidance: str = "dgsa", sampler: Optional[dict] = None) -> Path:
    """Write random-weight checkpoints (cached in ``out_dir``), the DSST table and a sampling config.

    ``respacing`` is the DDIM respacing (e.g. "ddim10"); ``sampler`` overrides entries of the sampler
    section. Returns the config path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch = architectures(resolution)
    ck = {name: _save_random(node, out_dir / f"{name}_{resolution}_{_digest(node)}.pth", seed)
          for seed, (name, node) in enumerate(arch.items())}
    sde = ck["sde"]
    sde["params"] = dict(sde["params"], log_sigma_init=0.0)  # sigma_hat set per face: set_sde_sigma
    diffusion = _yaml(SAMPLE_512)["diffusion"]
    diffusion["params"]["timestep_respacing"] = respacing
    cfg = {
        "resolution": resolution,
        "diffusion": diffusion,
        "model": ck["unet"],
        "restorer": ck["restorer"],
        "dblm": {"num_levels": 3, "rho": 0.75, "sigma_min_512": 0.5, "sde": sde, "tm": ck["tm"], "rm": ck["rm"]},
        "dsst": {"table_path": str(dsst_table(out_dir, resolution, faces))},
        "dgsa": ck["dgsa"],
        "sampler": dict({"method": method, "start": "dsst", "fixed_start_index": difface_start(respacing),
                         "eta": "auto", "guidance": {"mode": guidance, "lam": 0.05, "combine": "sharpest"}},
                        **(sampler or {})),
    }
    path = out_dir / f"sample_{resolution}_{method}_{guidance}_{respacing}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def difface_start(respacing: str, t_start: int = 400) -> int:
    """Respaced index of DifFace's fixed start t = 400 (100 of ddim250): the first index with timestep >= t."""
    from models.respace import space_timesteps

    steps = sorted(space_timesteps(1000, respacing))
    return next(i for i, t in enumerate(steps) if t >= t_start)


def set_sde_sigma(sampler, sigma_px: float) -> None:
    """Make the (constant) SDE of a DynFaceRestore sampler return ``sigma_px`` for every face."""
    last = sampler.dblm.sde.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(math.log(max(float(sigma_px), 1e-6)))


def degraded_faces(faces: Sequence[Path], resolution: int, sigma_512: Sequence[float]) -> torch.Tensor:
    """Real faces at ``resolution`` blurred by sigma_512[i] (512-px units): (N, 3, R, R) in [-1, 1]."""
    from data.blur import gaussian_blur
    from models.dsst import load_faces

    x = load_faces(list(faces), resolution)
    sig = torch.tensor([s * resolution / 512.0 for s in sigma_512], dtype=torch.float32)
    return gaussian_blur(x, sig).clamp(-1, 1)


# ------------------------------------------------------------------------------------------ timing
def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(variants: Dict[str, Callable[[], object]], repeats: int, warmup: int = 0,
                device="cpu") -> Dict[str, List[float]]:
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
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return peak_rss_mb()


def run_child(module: str, args: Sequence[str], timeout: float = 3600) -> dict:
    """Run ``python -m module args`` in a fresh process; it prints one JSON line last, returned here."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
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


def report(title: str, argv: Sequence[str], tables: Sequence[str], notes: Sequence[str] = (), device="cpu",
           write: bool = False, path: Path = DOCS) -> str:
    """The markdown section of one run (command, machine, torch, date, notes, tables); appended with ``write``."""
    env = environment(device)
    head = [f"## {title}", "",
            f"- command: `python -m {' '.join(argv)}`",
            f"- machine: {env['machine']}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
            f"- torch {env['torch']}, {env['date']}"]
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
