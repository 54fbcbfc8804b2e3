"""Measure, one at a time, what the paper's code does differently on the digits claim (sims/README.md,
"paper_digits.toml"; issue 10, acceptance row 4).

Three kinds of run, all on the package's digits split of the given seed (the same train/validation/test rows,
10 % of the training set held out), 10 epochs, and one JSON line each (validation and test accuracy per epoch):

* ``ours``: the package's trainer at sims/paper_digits.toml's settings (NP + `scaled`); ``--set KEY=VALUE`` changes
  any RunConfig key (e.g. ``model=paper_mlp``, ``sigma=1e-6``, ``sample_frac=0.2``, ``decor=scaled_left``,
  ``input_scale=max``: the paper code's input scalings are the package's ``input_scale``, measured by
  sims/paper_digits_scaling.toml); the one knob the package has no key for is patched in for the measurement:
  ``--adam-beta2`` (the paper uses 0.9999). ``--set input_scale=...`` applies to the paper modes too.
* ``paper``: the paper's public code (github nasiryahm/CorrelationsRuinGD at HEAD, package ``crgd``: DenseNet of
  4x1000 NPLinear layers wrapped in DecorLinear) from a checkout given by ``--paper-code``. ``--fix-np`` makes
  DecorLinear pass NP's ``update_grads`` to its linear layer, without which that code never sets a weight gradient.
* ``paper-iclr``: the same code at commit abb7e13 ("Repo for ICLR submission", flat modules models.py, decor.py,
  np.py: PerturbNet of HalfBatchDecorLinear, R trained by SGD at the decor lr), ``--demean`` for its
  "demeaned-scaled" method (its "scaled", which the paper's sweep used, does not centre).

The paper's code is imported from the checkout, never copied. Example (one core, about 25 s a run when idle)::

    git clone https://github.com/nasiryahm/CorrelationsRuinGD /tmp/crgd
    git -C /tmp/crgd worktree add /tmp/crgd-iclr abb7e13
    .venv/bin/python sims/paper_digits_reference.py ours --seed 1 --set model=paper_mlp
    .venv/bin/python sims/paper_digits_reference.py paper --seed 1 --paper-code /tmp/crgd --fix-np --adam-beta2 0.9999
    .venv/bin/python sims/paper_digits_reference.py paper-iclr --seed 1 --paper-code /tmp/crgd-iclr --adam-beta2 0.9999

sims/paper_differences.py runs the measurements declared in sims/paper_differences.toml with this script.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import analogdecorr.data as data

MODES = ("ours", "paper", "paper-iclr")
CLONE = "git clone https://github.com/nasiryahm/CorrelationsRuinGD /tmp/crgd"  # how to get the paper's code
BASE = {"dataset": "digits", "rule": "np", "decor": "scaled", "epochs": 10, "probe_size": 0, "drift_times": []}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter,
                                epilog="the declared measurements: sims/paper_differences.py")
    p.add_argument("mode", choices=MODES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adam-beta2", type=float, default=0.999, help="Adam's beta2 (torch default 0.999; paper 0.9999)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="ours: RunConfig keys; paper modes: sigma, decor_lr, lr, batch_size, epochs, input_scale")
    p.add_argument("--paper-code", type=Path, help="checkout of nasiryahm/CorrelationsRuinGD (paper modes)")
    p.add_argument("--fix-np", action="store_true", help="paper: pass NP's update_grads through DecorLinear")
    p.add_argument("--demean", action="store_true", help="paper-iclr: the 'demeaned-scaled' method")
    return p.parse_args(argv)


def _settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --set takes KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def run_ours(args: argparse.Namespace, sets: dict[str, str]) -> tuple[list[float], list[float]]:
    """The package's trainer; Adam's beta2 patched into the float backend's optimizer factory."""
    import analogdecorr.backends.float as float_backend
    from analogdecorr.config import resolve
    from analogdecorr.train import Trainer

    def make_optimizer(cfg, params) -> torch.optim.Optimizer:
        params = [q for q in params if q.requires_grad]
        return torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, args.adam_beta2), weight_decay=cfg.weight_decay)

    float_backend.make_optimizer = make_optimizer
    with tempfile.TemporaryDirectory() as out:
        cfg = resolve({**BASE, "seed": args.seed, "out": out}, sets)
        if cfg.optimizer != "adam":
            raise SystemExit("error: ours patches Adam's beta2; drop optimizer from --set")
        epochs = Trainer(cfg, progress=False, log=lambda message: None).run()["epochs"]
    return [e["val_acc"] for e in epochs], [e["test_acc"] for e in epochs]


def run_paper(args: argparse.Namespace, sets: dict[str, str]) -> tuple[list[float], list[float]]:
    """The paper's code (HEAD or the ICLR commit) on the package's split, trained as its utils.train does."""
    if args.paper_code is None or not args.paper_code.is_dir():
        commit = " && git -C /tmp/crgd worktree add /tmp/crgd-iclr abb7e13" if args.mode == "paper-iclr" else ""
        raise SystemExit(f"error: the paper modes need --paper-code DIR, a checkout of nasiryahm/CorrelationsRuinGD: "
                         f"{CLONE}{commit}, then --paper-code /tmp/crgd{'-iclr' if commit else ''}")
    sys.path.insert(0, str(args.paper_code.resolve()))
    x, y = data._digits_arrays()
    x_tr, y_tr, x_te, y_te = data._split(x, y, 0.2, args.seed, "digits")
    x_tr, y_tr, x_va, y_va = data._split_validation(x_tr, y_tr, float(sets.get("val_frac", 0.1)), args.seed, "digits")
    xs_tr, xs_va, xs_te = data._scale(sets.get("input_scale", "feature"), x_tr, x_va, x_te)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    arrays = (xs_tr, y_tr, xs_va, y_va, xs_te, y_te)
    xt, yt, xv, yv, xe, ye = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    sigma, decor_lr = float(sets.get("sigma", 1e-3)), float(sets.get("decor_lr", 1e-4))
    lr, batch, epochs = float(sets.get("lr", 1e-4)), int(sets.get("batch_size", 64)), int(sets.get("epochs", 10))
    normal = torch.distributions.Normal(torch.tensor([0.0]), torch.tensor([1.0]))

    def sampler(shape: list[int]) -> torch.Tensor:  # the paper's dist_sampler: N(0, 1) of the given shape
        return normal.sample([1] + shape).squeeze_(-1).sum(0)

    kwargs = {"sigma": sigma, "dist_sampler": sampler}
    with contextlib.redirect_stdout(io.StringIO()):  # the paper's models print themselves
        if args.mode == "paper-iclr":
            from models import PerturbNet  # the ICLR commit's flat modules
            from np import NPLinear

            model = PerturbNet(in_size=64, out_size=10, hidden_size=1000, n_hidden_layers=4, layer_type=NPLinear,
                               activation_function=torch.nn.LeakyReLU, layer_kwargs=kwargs,
                               decorrelation_method="demeaned-scaled" if args.demean else "scaled")
            optimizers = [torch.optim.Adam(model.get_fwd_params(), betas=(0.9, args.adam_beta2), eps=1e-8, lr=lr),
                          torch.optim.SGD(model.get_decor_params(), lr=decor_lr)]
        else:
            import crgd.decor
            from crgd.models import DenseNet
            from crgd.np import NPLinear

            if args.fix_np:
                crgd.decor.DecorLinear.update_grads = lambda self, factor: self.linear.update_grads(factor)
            model = DenseNet(in_size=64, out_size=10, layer_type=NPLinear, decor_lr=decor_lr,
                             activation_function=torch.nn.LeakyReLU, layer_kwargs=kwargs)
            optimizers = [torch.optim.Adam(model.parameters(), betas=(0.9, args.adam_beta2), eps=1e-8, lr=lr)]
    loss = torch.nn.CrossEntropyLoss(reduction="none")
    loss_func: Callable = lambda output, target, onehots: loss(output, target)  # noqa: E731 (the paper's signature)

    def accuracy(xs: torch.Tensor, ys: torch.Tensor) -> float:
        _, output = model.test_step(xs, ys, None, loss_func)
        return float((output.argmax(1) == ys).float().mean())

    val, test = [], []
    for _ in range(epochs):
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), batch):
            idx = order[start : start + batch]
            for opt in optimizers:
                opt.zero_grad()
            model.train_step(xt[idx], yt[idx], None, loss_func)
            for opt in optimizers:
                opt.step()
        val.append(accuracy(xv, yv))
        test.append(accuracy(xe, ye))
    return val, test


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sets = _settings(args.set)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    val, test = run_ours(args, sets) if args.mode == "ours" else run_paper(args, sets)
    print(json.dumps({"mode": args.mode, "seed": args.seed, "adam_beta2": args.adam_beta2,
                      "set": sets, "fix_np": args.fix_np, "demean": args.demean, "val_acc": val, "test_acc": test,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
