"""TorchFeatureExtractor against a bare ``for batch: model(batch)`` loop: time, memory.

Speed: the extractor and the bare loop run the same model (the CNN of
``make_waterdigits``, else a small ResNet-like CNN) on the same random inputs,
interleaved, ``--repeats`` times, in this run; the table gives the median and
best seconds, the overhead (median extractor / median bare loop) in wall time
and in CPU time of this process (robust to other load on a shared machine;
use ``--threads 1`` there), and the throughput. The extractor runs without a
cache (``memory=None``, the default), with the in-process cache
(``memory="auto"``) on a miss (inputs and weights are hashed) and on a hit. On
CPU, and on CUDA when available.

Memory (Linux): ``--memory-n`` inputs are extracted in a fresh process per
case, after a one-batch warm-up and ``malloc_trim``; the peak extra memory is
the highest anonymous resident memory (RssAnon, sampled every 10 ms)
above its level just before the call, the inputs excluded.
Cases: the default embedding and flattened conv maps, each returned in memory
or written to a ``.npy`` memmap (``out=``); with CUDA, also the peak GPU memory
for n and n / 10 inputs (it must not grow with n).

    python benchmarks/bench_extractor.py [--n 20000] [--memory-n 100000]
                                         [--batch-size 256] [--repeats 5]
                                         [--threads T]
"""

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch
from torch import nn

from sklearn_spur import TorchFeatureExtractor


class ToyResNet(nn.Module):
    """Fallback model: two residual stages on 3x32x32 inputs, a 128-d embedding."""

    def __init__(self, width=32, n_classes=10):
        super().__init__()

        def block(c):
            return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c),
                                 nn.ReLU(), nn.Conv2d(c, c, 3, padding=1),
                                 nn.BatchNorm2d(c))

        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.block1, self.down = block(width), nn.Conv2d(width, 2 * width, 3, 2, 1)
        self.block2 = block(2 * width)
        self.embed = nn.Linear(2 * width, 128)
        self.fc = nn.Linear(128, n_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block1(x))
        x = self.down(x)
        x = torch.relu(x + self.block2(x))
        return self.fc(torch.relu(self.embed(x.mean((2, 3)))))


def load_model():
    """(model in eval mode, input shape, name of a conv layer, its flattened width)."""
    try:
        from sklearn_spur.datasets import make_waterdigits

        model = make_waterdigits().model.eval()
        return model, (3, 16, 16), "features.10", "make_waterdigits().model"
    except ImportError:
        torch.manual_seed(0)
        return ToyResNet().eval(), (3, 32, 32), "block2", "ToyResNet (fallback)"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(model, X, batch_size, device):
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            batch = torch.from_numpy(X[start:start + batch_size])
            model(batch.to(device, non_blocking=True))
    sync(device)


def time_it(fn):
    """(wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def speed(model, X, batch_size, repeats, device):
    model.to(device)
    plain = TorchFeatureExtractor(model, batch_size=batch_size, device=device,
                                  progress=False, memory=None)
    cached = TorchFeatureExtractor(model, batch_size=batch_size, device=device,
                                   progress=False, memory="auto")

    def miss():
        TorchFeatureExtractor.clear_cache()
        cached.transform(X)

    runs = {"bare loop": lambda: bare_loop(model, X, batch_size, device),
            "extractor, memory=None": lambda: plain.transform(X),
            "extractor, cache miss": miss,
            "extractor, cache hit": lambda: cached.transform(X)}
    for fn in runs.values():  # warm-up (allocator, kernels, the cache for "hit")
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(time_it(fn))
    model.to("cpu")
    return times


def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise OSError("no RssAnon in /proc/self/status")


def memory_case(args):
    """Runs in a fresh process: prints {"extra_mb", "gpu_mb", "seconds"} as JSON."""
    model, shape, conv, _ = load_model()
    device = torch.device(args.device)
    X = np.random.default_rng(0).normal(size=(args.n_case, *shape)).astype(np.float32)
    params = ({"layer": conv, "capture": "output", "pooling": "flatten"} if args.conv
              else {})
    ext = TorchFeatureExtractor(model, batch_size=args.batch_size, device=device,
                                progress=False, memory=None, **params)
    ext.transform(X[:args.batch_size])  # warm-up: lazy initialisation of torch
    if device.type == "cuda":
        model.to(device)
        torch.cuda.reset_peak_memory_stats(device)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the OS: re-faulted
    base = peak = rss_anon()
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.wait(0.01):  # often enough; every 1 ms slows torch's threads
            peak = max(peak, rss_anon())

    sampler = threading.Thread(target=sample)
    sampler.start()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        Z = ext.transform(X, out=os.path.join(tmp, "z.npy") if args.memmap else None)
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        peak = max(peak, rss_anon())
        result = {"extra_mb": (peak - base) / 2**20, "seconds": seconds,
                  "out_mb": Z.nbytes / 2**20, "d": Z.shape[1],
                  "gpu_mb": (torch.cuda.max_memory_allocated(device) / 2**20
                             if device.type == "cuda" else None)}
        del Z
    print(json.dumps(result))


def run_case(args, device, n, conv, memmap):
    cmd = [sys.executable, __file__, "--_case", "--device", str(device),
           "--n-case", str(n), "--batch-size", str(args.batch_size),
           *(["--threads", str(args.threads)] if args.threads else []),
           *["--conv"] * conv, *["--memmap"] * memmap]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--memory-n", type=int, default=100000,
                        help="inputs of the memory part (0 skips it)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--_case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--n-case", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--conv", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memmap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._case:
        return memory_case(args)

    model, shape, conv, name = load_model()
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    X = np.random.default_rng(0).normal(size=(args.n, *shape)).astype(np.float32)
    print(f"model: {name}; inputs: {args.n} x {shape} float32; batch size "
          f"{args.batch_size}; torch {torch.__version__}, {torch.get_num_threads()} "
          f"CPU threads; {args.repeats} interleaved repeats")
    print("overhead: median extractor / median bare loop, in wall time and in CPU time "
          "of this process (the latter is robust to other load on the machine)")
    print(f"\n{'device':<7}{'run':<24}{'median s':>10}{'best s':>9}{'overhead':>10}"
          f"{'CPU s':>8}{'CPU overhead':>14}{'inputs/s':>11}")
    for device in devices:
        times = speed(model, X, args.batch_size, args.repeats, device)
        bare = [statistics.median(t) for t in zip(*times["bare loop"], strict=True)]
        for run, ts in times.items():
            walls, cpus = zip(*ts, strict=True)
            med, cpu = statistics.median(walls), statistics.median(cpus)
            print(f"{device.type:<7}{run:<24}{med:10.3f}{min(walls):9.3f}"
                  f"{med / bare[0]:10.3f}{cpu:8.3f}{cpu / bare[1]:14.3f}"
                  f"{args.n / med:11.0f}")

    n = args.memory_n
    if not n:
        return
    print(f"\nPeak extra host memory extracting {n} inputs (fresh process per case; "
          "inputs excluded)")
    print(f"{'device':<7}{'output':<44}{'output MB':>10}{'peak extra MB':>15}"
          f"{'s':>8}{'GPU MB':>9}")
    for device in devices:
        for conv_maps in (False, True):
            for memmap in (False, True):
                r = run_case(args, device, n, conv_maps, memmap)
                what = (f"{'flattened ' + conv if conv_maps else 'embedding'} "
                        f"(d={r['d']}), {'memmap' if memmap else 'in memory'}")
                gpu = "" if r["gpu_mb"] is None else f"{r['gpu_mb']:9.1f}"
                print(f"{device.type:<7}{what:<44}{r['out_mb']:10.1f}"
                      f"{r['extra_mb']:15.1f}{r['seconds']:8.2f}{gpu}")
        if device.type == "cuda":
            small = run_case(args, device, n // 10, False, True)
            print(f"cuda   peak GPU MB for {n // 10} inputs: {small['gpu_mb']:.1f} "
                  "(same as for n: GPU memory does not grow with n)")


if __name__ == "__main__":
    main()
