"""Why two torchrun processes and one end at different test AUCs (benchmarks/NOTES.md, issue 14 attempt 14):

    PYTHONPATH=. .venv/bin/python benchmarks/ddp_rounding.py --kernel cpp --seed 5 --lr 0.03 --epochs 8
    PYTHONPATH=. .venv/bin/python benchmarks/ddp_rounding.py --kernel inductor ...   (Criteo: the reference layer)

No DDP here: two copies of tests/test_torchrun.py's model (embed 4, d' 4, 1 head, 1 layer) train in one process on
the same batches of generated Criteo-format rows, one on each batch whole and one on the mean of its two halves'
mean gradients (what two DDP ranks average). Prints, per epoch, the first copy's test AUC, the largest parameter
difference between the copies and their test AUC gap; and once, the first parameter to drift past 1e-4.
`--grads` instead compares one step's gradients of the C++ layer and the reference layer (whole batch and halves)
for a few batch sizes.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F_

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def mean_grads(model, x, y, parts) -> dict:
    """The mean over `parts` (slices of the batch) of each part's mean-loss gradient, by parameter name."""
    out = {}
    for part in parts:
        model.zero_grad()
        F_.binary_cross_entropy_with_logits(model(x.index(part)).squeeze(-1), y[part]).backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                out[name] = out.get(name, 0) + p.grad / len(parts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="cpp", help="AUTOINT_CPU_KERNEL: cpp, cpp-attention or inductor")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rows", type=int, default=12000, help="generated rows (tests/test_torchrun.py: 12000, seed 4)")
    parser.add_argument("--grads", action="store_true")
    args = parser.parse_args()
    os.environ["AUTOINT_CPU_KERNEL"] = args.kernel
    torch.set_num_threads(1)
    from autoint.datasets import load_dataset
    from autoint.datasets.synth import generate_criteo
    from autoint.model.autoint import AutoInt, AutoIntConfig
    from autoint.training.metrics import roc_auc
    folder = generate_criteo(Path(tempfile.mkdtemp()) / "criteo", rows=args.rows, seed=4)
    data = load_dataset("criteo", data_dir=folder)
    x, y = data.split("train")
    x_test, y_test = data.split("test")
    y = y.float()
    torch.manual_seed(args.seed)
    config = AutoIntConfig(embed_dim=4, attn_dim=4, heads=1, layers=1, dropout=0.0)
    if args.grads:
        for B in (256, 128, 100, 65, 7):
            model = AutoInt(config, data.schema).train()
            xb, yb, h = x.index(slice(0, B)), y[:B], B // 2
            found = {}
            for kernel in ("cpp", "inductor"):
                os.environ["AUTOINT_CPU_KERNEL"] = kernel
                found[kernel] = (mean_grads(model, xb, yb, [slice(0, B)]),
                                 mean_grads(model, xb, yb, [slice(0, h), slice(h, 2 * h)]))
            (wc, hc), (wr, hr) = found["cpp"], found["inductor"]
            print(f"B={B}: largest gradient {max(g.abs().max().item() for g in wr.values()):.2g}; C++ - reference: "
                  f"whole {max((wc[n] - wr[n]).abs().max().item() for n in wr):.2g}, "
                  f"halves {max((hc[n] - hr[n]).abs().max().item() for n in hr):.2g}")
        return
    a = AutoInt(config, data.schema).train()
    b = copy.deepcopy(a)
    opt_a, opt_b = torch.optim.Adam(a.parameters(), lr=args.lr), torch.optim.Adam(b.parameters(), lr=args.lr)
    order_rng, B, told = torch.Generator().manual_seed(args.seed), 256, False
    print(f"kernel {args.kernel}, seed {args.seed}, lr {args.lr}; the model runs the fused layer: "
          f"{a.uses_fused_layer(a.embed(x.index(slice(0, 2))))}")
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(y), generator=order_rng)
        for start in range(0, len(y) - B + 1, B):
            idx = order[start:start + B]
            xb, yb = x.index(idx), y[idx]
            for model, opt, parts in ((a, opt_a, [slice(0, B)]), (b, opt_b, [slice(0, B // 2), slice(B // 2, B)])):
                grads = mean_grads(model, xb, yb, parts)
                for name, p in model.named_parameters():
                    p.grad = grads.get(name)
                opt.step()
            if not told:
                diffs = {n: (p - q).abs().max().item() for (n, p), (_, q) in zip(a.named_parameters(),
                                                                                  b.named_parameters())}
                worst = max(diffs, key=diffs.get)
                if diffs[worst] > 1e-4:
                    told = True
                    print(f"  epoch {epoch}, step {start // B}: {worst} is the first past 1e-4 ({diffs[worst]:.2g})")
        with torch.no_grad():
            a.eval(), b.eval()
            auc_a, auc_b = roc_auc(y_test, a(x_test).squeeze(-1)), roc_auc(y_test, b(x_test).squeeze(-1))
            a.train(), b.train()
        d = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
        print(f"  epoch {epoch}: test AUC {auc_a:.4f}, parameters {d:.1e} apart, AUC gap {abs(auc_a - auc_b):.4f}",
              flush=True)


if __name__ == "__main__":
    main()
