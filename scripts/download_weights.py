"""Fetch the two public DifFace checkpoints that configs/sample/dynfacerestore_ffhq512_public.yaml reads.

    python scripts/download_weights.py [--base-url URL] [--root DIR] [--timeout S]

For each file (the release URLs DifFace's own inference script uses; target paths from the config's
``model`` and ``restorer`` sections):

1. a target that is already there and has the right layout is kept;
2. the bytes go to ``<target>.part``, with a progress bar; a ``.part`` left by a broken transfer is
   resumed with an HTTP Range request (a server that ignores it sends the whole file again);
3. the finished ``.part`` is loaded (``torch.load``, weights only) and its keys and shapes compared with
   configs/checkpoint_specs/ (SwinIR's rebuilt buffers may be absent); only then is it renamed onto the
   target (atomic). A file with another layout is deleted and reported; nothing is left at the target.

Without network (no connection to the server) it prints one line naming the URLs and target paths
needed and changes nothing. Exit status: 0 all files in place, 1 otherwise.
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
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.checkpoint import CheckpointError, read_state_dict  # noqa: E402
from utils.config import load_config  # noqa: E402

BASE_URL = "https://github.com/zsyOAOA/DifFace/releases/download/V1.0"
CONFIG = "configs/sample/dynfacerestore_ffhq512_public.yaml"
SPECS = ROOT / "configs" / "checkpoint_specs"
#: Buffers a saved SwinIR may leave out (the model rebuilds them).
OPTIONAL_KEYS = ("attn_mask", "relative_position_index")
CHUNK = 1 << 20


@dataclass
class Weight:
    section: str  # of the config
    spec: str     # configs/checkpoint_specs/<spec>.json


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
        raise DownloadError(str(err).splitlines()[0]) from None
    missing = [k for k in want if k not in state and not k.endswith(OPTIONAL_KEYS)]
    unknown = [k for k in state if k not in want]
    wrong = [k for k in want if k in state and list(state[k].shape) != list(want[k])]
    if missing or unknown or wrong:
        raise DownloadError(f"{path.name}: not the layout of {spec} ({len(missing)} keys missing, {len(unknown)} "
                            f"unexpected, {len(wrong)} of another shape; first: {(missing + unknown + wrong)[0]})")


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
        with open(part, "ab" if have else "wb") as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                             desc=part.name[:-len(".part")], file=sys.stderr) as bar:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (OSError, ValueError) as err:  # a connection cut in the middle
                raise DownloadError(f"{url}: transfer broken after {out.tell()} bytes ({err}); run again to "
                                    f"resume") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: transfer broken after {size} of {total} bytes; run again to resume")


def download(weight: Weight, target: Path, base_url: str, timeout: float) -> str:
    """One file, steps 1-3 of the module docstring; returns what was done."""
    if target.is_file():
        check_layout(target, weight.spec)
        return f"{target}: already there"
    part = target.with_name(target.name + ".part")
    fetch(f"{base_url.rstrip('/')}/{target.name}", part, timeout)
    try:
        check_layout(part, weight.spec)
    except DownloadError:
        part.unlink()
        raise
    os.replace(part, target)
    return f"{target}: downloaded and checked"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=BASE_URL, help=f"where the files are (default {BASE_URL})")
    parser.add_argument("--root", type=Path, default=ROOT, help="the targets are relative to this folder "
                                                                "(default: the repository)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    status = 0
    for weight, target in zip(WEIGHTS, targets(args.root)):
        try:
            print(download(weight, target, args.base_url, args.timeout))
        except NoNetwork as err:
            needed = "; ".join(f"{args.base_url.rstrip('/')}/{t.name} -> {t}" for t in targets(args.root))
            print(f"download_weights: no connection ({err}); nothing changed. Needed: {needed}", file=sys.stderr)
            return 1
        except DownloadError as err:
            print(f"download_weights: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
