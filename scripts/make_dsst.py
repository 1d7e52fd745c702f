"""Build a DSST table (models/dsst_build.py) from HQ faces and a configs/dsst/*.yaml, and save it as JSON.

    python scripts/make_dsst.py --images FOLDER_OR_LIST [...] --config configs/dsst/demo64.yaml --out TABLE.json \
        [--resolution R] [--max-images N] [--device cpu] [--half-split]

``--half-split`` also builds the table from the even and the odd images and stores how far the halves differ.
The command and its inputs are stored in the table's ``provenance``; exit status 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.dsst_build import build_from_config, half_split  # noqa: E402


def _relative(path) -> str:
    """``path`` relative to the current directory (a table stores no absolute path of the machine)."""
    return Path(os.path.relpath(path)).as_posix()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Build a DSST table (docs/method.md section 5).")
    parser.add_argument(
        "--images",
        required=True,
        nargs="+",
        help="folder(s) of HQ faces, or .txt list(s) of names (several are concatenated)",
    )
    parser.add_argument("--config", required=True, help="configs/dsst/*.yaml")
    parser.add_argument("--out", required=True, help="output JSON")
    parser.add_argument("--resolution", type=int, default=None, help="overrides the config's resolution")
    parser.add_argument("--max-images", type=int, default=None, help="use the first N images of the list")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--half-split",
        action="store_true",
        help="also build the table from each half of the images and store how much it moves",
    )
    args = parser.parse_args(argv)
    images = args.images[0] if len(args.images) == 1 else args.images
    try:
        table = build_from_config(images, args.config, args.resolution, args.max_images, args.device)
        command = " ".join(_relative(a) if Path(a).exists() else a for a in (argv or sys.argv[1:]))
        table.provenance = {
            "command": f"python scripts/make_dsst.py {command}",
            "images": [_relative(p) for p in args.images],
            "config": _relative(args.config),
        }
        if args.half_split:
            table.provenance["half_split"] = half_split(
                images, args.config, args.resolution, args.device, table, args.max_images
            )
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2  # a bad input, as for every other command
    table.save(args.out)
    print(table.format())
    if args.half_split:
        print("half split:", json.dumps(table.provenance["half_split"]))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
