"""The cost of tensor checksums on a CelebA-64-sized checkpoint (configs/ssd_celeba64.yaml: weights, EMA and AdamW
state), as AtomicCheckpointIO writes and reads it. Not a test (no timing asserts): run it and read the numbers.

    .venv/bin/python tests/io/measure_checksum_cost.py [repeats]
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from scale_space_diffusion.io.checkpoint_io import AtomicCheckpointIO
from scale_space_diffusion.io.integrity import KEY, checksums, verify
from scale_space_diffusion.models.settings import Optimization
from scale_space_diffusion.models.ssd import ScaleSpaceDiffusion
from scale_space_diffusion.networks.flexi_unet import FlexiUNet

ROOT = Path(__file__).resolve().parents[2]


def celeba64_checkpoint() -> dict:
    args = yaml.safe_load((ROOT / "configs/ssd_celeba64.yaml").read_text())["model"]["init_args"]
    model = ScaleSpaceDiffusion(FlexiUNet(**args["net"]["init_args"]), num_levels=args["num_levels"],
                                optim=Optimization(**args["optim"]))  # fmt: skip
    optimizer = torch.optim.AdamW(model.net.parameters(), lr=1e-4)
    for p in model.net.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()  # AdamW's exp_avg and exp_avg_sq exist, as after any training step
    return {"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()], "global_step": 1}


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(repeats: int = 3) -> None:
    ckpt = celeba64_checkpoint()
    tensors = sum(t.numel() * t.element_size() for t in [*ckpt["state_dict"].values()] +
                  [v for s in ckpt["optimizer_states"][0]["state"].values() for v in s.values() if torch.is_tensor(v)])  # fmt: skip
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # the disk the runs write to, not a tmpfs
        path = Path(tmp) / "last.ckpt"
        io = AtomicCheckpointIO()
        digest = timed(lambda: checksums(ckpt), repeats)
        save = timed(lambda: io.save_checkpoint(ckpt, path), repeats)
        loaded = io.load_checkpoint(path)
        check = timed(lambda: verify(loaded, loaded[KEY], path), repeats)
        load = timed(lambda: io.load_checkpoint(path), repeats)
        unchecked = timed(lambda: AtomicCheckpointIO(verify=False).load_checkpoint(path), repeats)
        size = path.stat().st_size
    print(f"checkpoint: {size / 2**20:.0f} MiB ({tensors / 2**20:.0f} MiB of tensors, {len(loaded[KEY])} tensors); "
          f"median of {repeats}, {torch.get_num_threads()} torch threads")
    print(f"save with checksums {save:.2f} s, of which the checksums {digest:.2f} s ({100 * digest / save:.0f} %)")
    print(f"load with verification {load:.2f} s, without {unchecked:.2f} s; verification alone {check:.2f} s")
    print(f"sha256 throughput {tensors / 2**20 / digest:.0f} MiB/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
