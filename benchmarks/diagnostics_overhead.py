"""Per-epoch cost of the study's diagnostics (spectra of cov(z), NP's gradient cosine) against the epoch's training.

Trains one run (flags = config keys, ``key=value``), then times, on the trained network, what ``Trainer`` adds to
each epoch: ``input_spectrum`` of every layer's z over the 1000 probe rows and ``np_gradient_cosine`` on
``probe_size`` samples (NP only), next to the correlation figures that existed before them. torch, OpenMP and BLAS
are pinned to one thread, as in one run of a sweep (on a shared machine two threads ran everything ~30× slower).

    .venv/bin/python benchmarks/diagnostics_overhead.py dataset=correlated rho=0.9 hidden=100 rule=np decor=whiten
    .venv/bin/python benchmarks/diagnostics_overhead.py epochs=2                    # the README's 4×1000 main job
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before torch loads them
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

from analogdecorr.config import resolve  # noqa: E402
from analogdecorr.diagnostics import input_spectrum, np_gradient_cosine  # noqa: E402
from analogdecorr.metrics import mean_abs_offdiag  # noqa: E402
from analogdecorr.rules import NodePerturbation  # noqa: E402
from analogdecorr.train import Trainer  # noqa: E402


def mean_seconds(work: Callable[[], object], repeats: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    overrides = dict(arg.split("=", 1) for arg in argv)
    out = Path(tempfile.mkdtemp(prefix="diag_overhead_"))
    overrides.setdefault("epochs", "3")
    cfg = resolve({}, {**overrides, "out": str(out)})
    try:
        trainer = Trainer(cfg, progress=False, log=lambda m: None)
        epochs = trainer.run()["epochs"]
        data, net = trainer.data, trainer.net
        rows = data.x_train[:1000]
        corr = mean_seconds(lambda: [(mean_abs_offdiag(a), mean_abs_offdiag(z)) for a, z in net.layer_inputs(rows)])
        inputs = net.layer_inputs(rows)
        spectra = mean_seconds(lambda: [input_spectrum(z) for _, z in inputs])
        cosine = 0.0
        if isinstance(trainer.rule, NodePerturbation):
            n = cfg.probe_size
            weights = [trainer.backend.exact_weights(layer) for layer in net.layers]
            cosine = mean_seconds(lambda: np_gradient_cosine(net, trainer.rule, weights, data.x_train[:n],
                                                             data.y_train[:n], torch.Generator().manual_seed(0)))
        train_s = min(e["seconds"] for e in epochs)
        print(f"epoch (training, fastest of {len(epochs)}) {train_s:.3f} s; correlation figures (before) "
              f"{corr:.3f} s; spectra {spectra:.3f} s; gradient cosine {cosine:.3f} s; "
              f"added by the diagnostics {100 * (spectra + cosine) / train_s:.1f} % of the epoch's training")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
