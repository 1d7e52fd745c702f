"""One training step (forward, L1 / MSE loss, backward, AdamW) in fp32 and under bf16 autocast (``train.amp``).

    OMP_NUM_THREADS=2 python -m benchmarks.bench_train_precision --resolution 64 --batch 16 --repeats 5

Every network of the scale's sampling config, random weights and images, variants round-robin.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Callable, Dict

import torch
import torch.nn.functional as F

from benchmarks import common
from utils.config import instantiate

NETWORKS = ("unet", "restorer", "sde", "tm", "rm")


def loss_fn(name: str, net: torch.nn.Module, batch: int, resolution: int, device) -> Callable[[], torch.Tensor]:
    """The network's loss on fixed random inputs of its training signature."""
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(batch, 3, resolution, resolution, generator=g) * 2 - 1).to(device)
    sigma = (torch.rand(batch, generator=g) * 2 + 0.5).to(device)
    if name == "unet":
        t = torch.randint(0, 1000, (batch,), generator=g).to(device)
        return lambda: F.mse_loss(net(y, t)[:, :3], y)
    if name == "restorer":
        return lambda: F.l1_loss(net(y), y)
    if name == "sde":
        return lambda: net(y).mean()
    if name == "tm":
        return lambda: F.l1_loss(net(y, sigma), y)
    return lambda: F.l1_loss(net(y, y, 0.75 * sigma), y)


def train_step(net: torch.nn.Module, loss: Callable[[], torch.Tensor], optimizer, dtype, device) -> Callable[[], None]:
    def step():
        ctx = torch.autocast(torch.device(device).type, dtype=dtype) if dtype else contextlib.nullcontext()
        with ctx:
            value = loss()
        optimizer.zero_grad(set_to_none=True)
        value.float().backward()
        optimizer.step()

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.common_args(parser, resolution=64, repeats=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    args = parser.parse_args(argv)

    dev = torch.device(args.device)
    nodes = common.architectures(args.resolution)
    rows = []
    for name in args.networks:
        torch.manual_seed(0)
        net = instantiate(nodes[name]).to(dev).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5)
        loss = loss_fn(name, net, args.batch, args.resolution, dev)
        variants: Dict[str, Callable[[], None]] = {
            "fp32": train_step(net, loss, optimizer, None, dev),
            "bf16 autocast": train_step(net, loss, optimizer, torch.bfloat16, dev),
        }
        times = common.interleaved(variants, args.repeats, warmup=args.warmup, device=dev)
        fp32 = common.median(times["fp32"])
        params = sum(p.numel() for p in net.parameters()) / 1e6
        for variant, values in times.items():
            m = common.median(values)
            rows.append([name, f"{params:.2f}", variant, m, common.spread(values), f"{fp32 / m:.2f}"])
    notes = [
        f"resolution {args.resolution}, batch {args.batch}, {args.repeats} repeats (round-robin), "
        f"{args.warmup} warm-up rounds, random weights and images"
    ] + list(args.note)
    table = common.markdown_table(
        ["network", "params (M)", "precision", "median s / step", "min-max s", "speed-up over fp32"], rows
    )
    common.report(
        f"Training step, fp32 vs bf16 autocast, {args.resolution} px",
        ["benchmarks.bench_train_precision", *(sys.argv[1:] if argv is None else argv)],
        [table],
        notes,
        device=args.device,
        write=args.write,
        path=Path(args.out),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
