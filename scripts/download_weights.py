"""Fetch the public DifFace checkpoints (and, with --eval, the evaluation's weights) into the repository.

    python scripts/download_weights.py [--eval] [--list] [--base-url URL] [--root DIR] [--timeout S]

Each file goes to ``<target>.part`` (resumed with an HTTP Range request), is checked against
configs/checkpoint_specs/ or its sha256 prefix, and only then renamed onto the target. Exit status 0 when
every file is in place, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.checkpoint import CheckpointError, read_state_dict  # noqa: E402
from utils.config import first_line, load_config  # noqa: E402
from utils.eval_weights import DEFAULT_DIR, EVAL_WEIGHTS, EvalWeight, WeightsError, check_file  # noqa: E402

BASE_URL = "https://github.com/zsyOAOA/DifFace/releases/download/V1.0"
CONFIG = "configs/sample/dynfacerestore_ffhq512_public.yaml"
SPECS = ROOT / "configs" / "checkpoint_specs"
#: Buffers a saved SwinIR may leave out (the model rebuilds them).
OPTIONAL_KEYS = ("attn_mask", "relative_position_index")
CHUNK = 1 << 20


@dataclass
class Weight:
    section: str  # of the config
    spec: str  # configs/checkpoint_specs/<spec>.json


WEIGHTS = (Weight("model", "difface_iddpm_ffhq512_unet"), Weight("restorer", "difface_swinir_restoration512"))


class DownloadError(RuntimeError):
    """A file that could not be fetched or checked; the message is one line."""


class NoNetwork(DownloadError):
    """The server could not be reached at all."""


def targets(root: Path) -> List[Path]:
    """Target paths of :data:`WEIGHTS` under ``root``, from the public config's ckpt_path values."""
    cfg = load_config(ROOT / CONFIG)
    return [root / cfg[w.section].ckpt_path for w in WEIGHTS]


def check_layout(path: Path, spec: str) -> None:
    """Raise DownloadError unless ``path`` holds a state dict with exactly the keys and shapes of ``spec``."""
    want = json.loads((SPECS / f"{spec}.json").read_text())
    try:
        state = read_state_dict(path)
    except CheckpointError as err:
        raise DownloadError(first_line(err)) from None
    missing = [k for k in want if k not in state and not k.endswith(OPTIONAL_KEYS)]
    unknown = [k for k in state if k not in want]
    wrong = [k for k in want if k in state and list(state[k].shape) != list(want[k])]
    if missing or unknown or wrong:
        raise DownloadError(
            f"{path.name}: not the layout of {spec} ({len(missing)} keys missing, {len(unknown)} "
            f"unexpected, {len(wrong)} of another shape; first: {(missing + unknown + wrong)[0]})"
        )


def fetch(url: str, part: Path, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current size; the progress bar goes to stderr."""
    from tqdm import tqdm

    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the .part is already complete
            return
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise NoNetwork(f"{url}: {getattr(err, 'reason', err)}") from None
    with response:
        if response.status != 206:
            have = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        part.parent.mkdir(parents=True, exist_ok=True)
        with (
            open(part, "ab" if have else "wb") as out,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name[: -len(".part")], file=sys.stderr
            ) as bar,
        ):
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (OSError, ValueError) as err:  # a connection cut in the middle
                raise DownloadError(
                    f"{url}: transfer broken after {out.tell()} bytes ({err}); run again to resume"
                ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: transfer broken after {size} of {total} bytes; run again to resume")


def fetch_checked(url: str, target: Path, check: Callable[[Path], None], timeout: float) -> str:
    """One file, steps 1-3 of the module docstring (``check`` raises DownloadError); returns what was done."""
    if target.is_file():
        check(target)
        return f"{target}: already there"
    part = target.with_name(target.name + ".part")
    fetch(url, part, timeout)
    try:
        check(part)
    except DownloadError:
        part.unlink()
        raise
    os.replace(part, target)
    return f"{target}: downloaded and checked"


def check_eval(weight: EvalWeight, path: Path) -> None:
    """:func:`utils.eval_weights.check_file` with the sha256 prefix, as a DownloadError."""
    try:
        check_file(weight, path, with_hash=True)
    except WeightsError as err:
        raise DownloadError(str(err)) from None


def jobs(args) -> List[Tuple[str, Path, Callable[[Path], None]]]:
    """(url, target, check) of every file to fetch; an evaluation file without a URL is not one."""
    base = args.base_url.rstrip("/") if args.base_url else None
    if not args.eval:
        return [
            (f"{base or BASE_URL}/{t.name}", t, lambda p, spec=w.spec: check_layout(p, spec))
            for w, t in zip(WEIGHTS, targets(args.root))
        ]
    folder = args.root / DEFAULT_DIR
    return [
        (f"{base}/{w.file}" if base else w.url, w.target(folder), lambda p, w=w: check_eval(w, p))
        for w in EVAL_WEIGHTS.values()
        if w.url is not None
    ]


def by_hand(args) -> List[str]:
    """One line per evaluation file without a direct URL: where to get it and where to put it."""
    folder = args.root / DEFAULT_DIR
    return [
        f"{w.target(folder)}: {'in place' if w.target(folder).is_file() else 'get ' + w.file + ' from ' + w.source}"
        for w in EVAL_WEIGHTS.values()
        if args.eval and w.url is None
    ]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--eval",
        action="store_true",
        help=f"the evaluation's weights (scripts/evaluate.py) into {DEFAULT_DIR}/ instead of DifFace's",
    )
    parser.add_argument("--list", action="store_true", help="print every file, URL and target; fetch nothing")
    parser.add_argument(
        "--base-url",
        default=None,
        help=f"a mirror holding the files (default: their release URLs; DifFace's {BASE_URL})",
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the targets are relative to this folder (default: the repository)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    todo = jobs(args)
    if args.list:
        print("\n".join([f"{url} -> {target}" for url, target, _ in todo] + by_hand(args)))
        return 0
    status = 0
    for url, target, check in todo:
        try:
            print(fetch_checked(url, target, check, args.timeout))
        except NoNetwork as err:
            needed = "; ".join(f"{u} -> {t}" for u, t, _ in todo)
            print(f"download_weights: no connection ({err}); nothing changed. Needed: {needed}", file=sys.stderr)
            return 1
        except DownloadError as err:
            print(f"download_weights: {err}", file=sys.stderr)
            status = 1
    for line in by_hand(args):
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
