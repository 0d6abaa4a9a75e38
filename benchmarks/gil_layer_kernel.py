"""Whether the C++ layer kernel lets other Python threads run while it computes (the app calls the model from a
background thread while the page thread and Streamlit's server run Python): a worker thread runs 3
layer_forward calls on a big batch; the main thread sleeps 0.5 ms in a loop and notes the gaps between its turns.
Holding the GIL, the largest gap is about one call; releasing it, a few ms.

    PYTHONPATH=. .venv/bin/python benchmarks/gil_layer_kernel.py [--batch 32768]
"""
import argparse
import json
import threading
import time

import torch

import autoint.model.autoint as model_module
import autoint.model.kernels.loader as kernel_loader


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32768)
    args = parser.parse_args()
    module = kernel_loader._Kernels().cpp_module()
    if module is None:
        print(json.dumps({"skipped": "the C++ kernel does not build here"}))
        return 0
    x, weight = torch.randn(16, 16, args.batch), torch.randn(4 * 2 * 32, 16) * 0.3
    call = lambda: module.layer_forward(x, weight, None, None, None, 2, 0.7, True, False, False)
    call()
    started = time.perf_counter()
    call()
    one_call = time.perf_counter() - started
    done = threading.Event()

    def work():
        for _ in range(3):
            call()
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    last, gaps = time.perf_counter(), []
    while not done.is_set():
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        time.sleep(0.0005)
    worker.join()
    print(json.dumps({"call_ms": round(one_call * 1e3, 1), "largest_gaps_ms": [round(g * 1e3, 1) for g in
                      sorted(gaps)[-3:]], "turns": len(gaps)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
