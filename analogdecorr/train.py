"""The training loop: epochs, evaluation, checkpoints, resume, divergence guard and results.json."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .backends.base import Backend, make_backend
from .config import RunConfig
from .data import Dataset, batches, check_batch, load_dataset
from .decor import refit_zca
from .diagnostics import input_spectrum, np_gradient_cosine
from .errors import ConfigError, DataError, DivergenceError
from .metrics import correlation_matrix, evaluate, mean_abs_offdiag
from .models import FLAT_MODELS, Network, build_model
from .results import Results, run_summary, versions
from .rules import NodePerturbation, Rule, make_rule

CHECKPOINT_NAME = "checkpoint.pt"
RESULTS_NAME = "results.json"


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate in (0-based) ``epoch`` of ``epochs``."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    if schedule == "step":  # ÷10 at half and again at three quarters of the run
        return 0.1 ** ((epoch >= epochs // 2) + (epoch >= (3 * epochs) // 4))
    if schedule == "exponential":  # ends at 1 % of the base rate
        return 0.01 ** (epoch / max(epochs - 1, 1))
    raise ConfigError(f"unknown lr_schedule {schedule!r}; choose constant, cosine, step or exponential.")


class Trainer:
    """Owns one run: data, network, backend, rule; ``run()`` trains to ``cfg.epochs`` and returns the results.

    Everything that depends on where the weights live (tiles or parameters: optimizer, updater, lr, probes,
    checkpointed network state, end-of-run evaluation) goes through ``self.backend``; the loop never asks which
    backend it has."""

    def __init__(self, cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.progress = progress
        self.log = log
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        self.data: Dataset = load_dataset(
            cfg.dataset,
            seed=cfg.seed,
            data_dir=cfg.data_dir,
            rho=cfg.rho,
            n_features=cfg.n_features,
            n_samples=cfg.n_samples,
            flatten=cfg.model in FLAT_MODELS,
            val_frac=cfg.val_frac,
            input_scale=cfg.input_scale,
        )
        self.net: Network = build_model(cfg, self.data.input_shape, self.data.n_classes)
        self.fixed = cfg.decor_numerics == "fixed"
        if self.fixed:
            from .cosim import record

            record.attach(self.net, cfg.cosim_record)
        self.backend: Backend = make_backend(cfg)
        self.net = self.backend.prepare(self.net)
        self.rule: Rule = make_rule(
            cfg.rule, self.net, optimizer=self.backend.optimizer, updater=self.backend.updater, sigma=cfg.sigma,
            seed=cfg.seed, antithetic=cfg.antithetic, perturbations=cfg.perturbations,
        )
        self.results = Results(config=cfg.to_dict(), versions=versions())
        if self.fixed:
            self.results.extra["cosim"] = _cosim_section(cfg, self.net)
        self.start_epoch = 0
        self._sigma_checked = False

    # ----------------------------------------------------------------- state
    def _state(self, epoch: int) -> dict:
        state = {
            "epoch": epoch,
            "fingerprint": self.cfg.fingerprint(),
            "model": self.backend.network_state(self.net),
            "backend": self.backend.state_dict(),
            "rule": self.rule.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "epochs": self.results.epochs,
        }
        if isinstance(self.rule, NodePerturbation):
            state["np_rng"] = self.rule.generator.get_state()
        return state

    def resume(self) -> None:
        """Continue from ``out/checkpoint.pt`` (ConfigError if it came from a different configuration)."""
        state = ckpt.load_checkpoint(self.out / CHECKPOINT_NAME, self.cfg.fingerprint())
        self.backend.load_network_state(self.net, state["model"])
        # checkpoints written before the backend protocol kept the float optimizer's state at the top level
        self.backend.load_state_dict(state.get("backend", {k: v for k, v in state.items() if k == "optimizer"}))
        self.rule.load_state_dict(state["rule"])
        torch.set_rng_state(state["torch_rng"])
        if "np_rng" in state and isinstance(self.rule, NodePerturbation):
            self.rule.generator.set_state(state["np_rng"])
        self.results.epochs = list(state["epochs"])
        self.results.extra["summary"] = run_summary(self.results.epochs)
        self.start_epoch = int(state["epoch"])
        if self.fixed:
            from .cosim import record

            record.restore_all(self.net, self.out)
        self.log(f"resuming {self.out} after epoch {self.start_epoch}")

    # ----------------------------------------------------------------- loop
    def _set_lr(self, epoch: int) -> float:
        lr = self.cfg.lr * lr_factor(self.cfg.lr_schedule, epoch, self.cfg.epochs)
        self.backend.set_lr(lr)
        if self.cfg.decor_lr_schedule != "constant":  # float decorrelators only (config checks the numerics)
            decor_lr = self.cfg.decor_lr * lr_factor(self.cfg.decor_lr_schedule, epoch, self.cfg.epochs)
            for _, decor in self.net.decorrelators:
                decor.lr = decor_lr
        return lr

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Per step only the loss (a scalar) is checked; a NaN/Inf weight or R shows in the next step's loss, and
        ``_diagnose`` runs again before every checkpoint, so no non-finite state is ever saved."""
        if not torch.isfinite(loss):
            self._diagnose(f"epoch {epoch + 1}, step {step + 1}", loss_nonfinite=True)

    def _diagnose(self, where: str, loss_nonfinite: bool = False) -> None:
        """Raise DivergenceError naming the first layer whose R or weights are NaN/Inf, else (when the loss was
        NaN/Inf with finite state) the activations."""
        for i, decor in self.net.decorrelators:
            if not torch.isfinite(decor.R).all():
                raise DivergenceError(
                    f"layer {i}'s decorrelation matrix R became NaN/Inf at {where}: the decorrelation lr "
                    f"{self.cfg.decor_lr:g} is too high for this input scale; try --decor-lr "
                    f"{self.cfg.decor_lr / 10:g} or scale_free = true. The last good checkpoint is kept."
                )
        for i, layer in enumerate(self.net.layers):
            if not torch.isfinite(self.backend.layer_weight(layer)).all():
                raise DivergenceError(
                    f"layer {i}'s weights became NaN/Inf at {where}: the learning rate {self.cfg.lr:g} is too "
                    f"high; try --lr {self.cfg.lr / 10:g}. The last good checkpoint is kept."
                )
        if loss_nonfinite:
            raise DivergenceError(
                f"the loss became NaN/Inf at {where} (weights and R are finite): the activations "
                f"overflowed; lower --lr ({self.cfg.lr:g}) or --decor-lr ({self.cfg.decor_lr:g}). "
                "The last good checkpoint is kept."
            )

    def _np_resolution_check(self) -> None:
        rule = self.rule
        if self._sigma_checked or not isinstance(rule, NodePerturbation) or rule.last_delta is None:
            return
        self._sigma_checked = True
        delta = rule.last_delta.abs()
        tiny = float((delta == 0).float().mean())
        if tiny > 0.5:
            msg = (
                f"sigma {self.cfg.sigma:g} is so small that {tiny:.0%} of per-sample loss differences are exactly 0 "
                "in float32 (below the loss's resolution); node perturbation learns nothing. Raise --sigma."
            )
            warnings.warn(msg, stacklevel=2)

    def _epoch_figures(self, epoch: int, lr: float, train_loss: float, seconds: float) -> dict:
        d = self.data
        tr_loss, tr_acc = evaluate(self.net, d.x_train, d.y_train)
        te_loss, te_acc = evaluate(self.net, d.x_test, d.y_test)
        va_loss, va_acc = evaluate(self.net, d.x_val, d.y_val) if len(d.x_val) else (None, None)
        probe = self.cfg.probe_size > 0  # the per-epoch diagnostics (spectra, NP's gradient cosine) are on
        before, after, spectra = [], [], []
        for rows, z in self.net.layer_inputs(d.x_train[:1000]):
            before.append(mean_abs_offdiag(rows))
            after.append(mean_abs_offdiag(z))
            if probe:
                spectra.append(input_spectrum(z))
        row = {
            "epoch": epoch + 1,
            "train_loss": tr_loss,
            "train_acc": tr_acc,
            "val_loss": va_loss,
            "val_acc": va_acc,
            "test_loss": te_loss,
            "test_acc": te_acc,
            "running_train_loss": train_loss,
            "corr_before": before,
            "corr_after": after,
            "lr": lr,
            "seconds": seconds,
        }
        if probe:
            row.update({f"zz_{key}": [s[key] for s in spectra] for key in ("cond", "eig_max", "eig_min", "rank")})
        if probe and isinstance(self.rule, NodePerturbation):
            n = self.cfg.probe_size
            gen = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch + 50_021)  # not the rule's
            weights = [self.backend.exact_weights(layer) for layer in self.net.layers]
            row["grad_cosine"] = np_gradient_cosine(
                self.net, self.rule, weights, d.x_train[:n], d.y_train[:n], gen
            )
        return row

    def run(self, stop_when: Callable[[], bool] | None = None) -> dict:
        """Train from ``start_epoch`` to ``cfg.epochs`` (or until ``stop_when()`` holds after an epoch)."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        d = self.data
        check_batch(d.x_train[:1], d.n_features)
        self.net.train()
        for epoch in range(self.start_epoch, cfg.epochs):
            lr = self._set_lr(epoch)
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            t0 = time.perf_counter()
            n_batches = math.ceil(d.x_train.shape[0] / cfg.batch_size)
            bar = tqdm(
                batches(d.x_train, d.y_train, cfg.batch_size, shuffle=True, generator=gen),
                total=n_batches,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                disable=not self.progress,
                leave=False,
            )
            refit_zca(self.net, d.x_train)  # the zca oracle's R, from this epoch's layer inputs (else no-op)
            running, seen = 0.0, 0
            extra: dict = {}
            for step, (xb, yb) in enumerate(bar):
                if torch.isnan(xb).any() or torch.isinf(xb).any():
                    check_batch(xb, self.data.n_features)
                probe = self.backend.start_probe(step)
                try:
                    loss, _ = self.rule.step(self.net, xb, yb)
                except DataError:
                    # The batch is finite (checked above), so a NaN/Inf reaching a later layer's decorrelator
                    # comes from diverged weights or activations: report the divergence, not the data.
                    self._diagnose(f"epoch {epoch + 1}, step {step + 1}", loss_nonfinite=True)
                    raise
                if probe is not None:
                    for key, values in probe().items():
                        extra.setdefault(key, []).extend(values)
                self._check_finite(loss, epoch, step)
                self._np_resolution_check()
                running += float(loss) * xb.shape[0]
                seen += xb.shape[0]
                bar.set_postfix(loss=f"{running / seen:.3f}")
            seconds = time.perf_counter() - t0
            self._diagnose(f"the end of epoch {epoch + 1}")
            try:
                row = self._epoch_figures(epoch, lr, running / max(seen, 1), seconds)
            except DataError:
                # weights and R are finite (checked above); finite evaluation data that turns NaN/Inf inside the
                # network is activations overflowing: the run diverged (a sweep records it so), not bad data
                if all(bool(torch.isfinite(x).all()) for x in (d.x_train, d.x_val, d.x_test)):
                    self._diagnose(f"the evaluation after epoch {epoch + 1}", loss_nonfinite=True)
                raise
            for key, values in extra.items():  # the epoch's mean of each probe's finite measurements
                finite = [v for v in values if math.isfinite(v)]
                row[key] = sum(finite) / len(finite) if finite else float("nan")
            if self.fixed:
                from .cosim import record

                row["cosim"] = [{"layer": i, **dec.pop_epoch_stats()} for i, dec in self.net.decorrelators]
                self.results.extra["cosim"]["scales"] = [c["scale"] for c in row["cosim"]]
                self.results.extra["cosim"]["layers"] = _cosim_layers(self.net)  # formats follow the scales
                record.save_all(self.net, self.out)
            self.results.add_epoch(row)
            self.results.extra["summary"] = run_summary(self.results.epochs)
            if epoch == cfg.epochs - 1:
                self.results.extra["corr_matrices"] = self._corr_matrices()
            self.results.save(self.out / RESULTS_NAME)
            ckpt.save_checkpoint(self.out / CHECKPOINT_NAME, self._state(epoch + 1))
            msg = (
                f"epoch {epoch + 1:3d}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}  "
                + (f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}  " if row["val_acc"] is not None
                   else "")
                + f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.3f}  "
                f"corr {_fmt(row['corr_before'])} -> {_fmt(row['corr_after'])}  {seconds:.1f}s"
            )
            if "update_cosine" in row:
                msg += f"  update cos {row['update_cosine']:.3f}"
            if "grad_cosine" in row:
                msg += f"  grad cos {_fmt(row['grad_cosine'])}"
            self.log(msg)
            if stop_when is not None and stop_when():
                break
        evaluations = self.backend.end_of_run(self.net, lambda m: evaluate(m, d.x_test, d.y_test)[1], self.log)
        if evaluations:
            self.results.extra.update(evaluations)
            self.results.save(self.out / RESULTS_NAME)
        return self.results.to_dict()

    def _corr_matrices(self, limit: int = 64) -> list[dict]:
        out = []
        for rows, z in self.net.layer_inputs(self.data.x_train[:2000])[:1]:
            out.append(
                {
                    "layer": 0,
                    "before": correlation_matrix(rows[:, :limit]).tolist(),
                    "after": correlation_matrix(z[:, :limit]).tolist(),
                }
            )
        return out


def _cosim_section(cfg: RunConfig, net: Network) -> dict:
    """results.json "cosim": the unit plan (where the format came from, whether the shift was derived from
    decor_lr) and every decorrelated layer's format."""
    from .cosim.unit import plan

    return {"unit": plan(cfg).to_dict(), "layers": _cosim_layers(net), "record": cfg.cosim_record}


def _cosim_layers(net: Network) -> list[dict]:
    """Every decorrelated layer's unit format and its step in real units (η · scale² per learning sample)."""
    out = []
    for i, dec in net.decorrelators:
        scale = dec.scale_value or 1.0
        out.append({"layer": i, "format": dec.fmt.to_dict(), "eta_real": 2.0**-dec.fmt.shift * scale**2})
    return out


def _fmt(values: list[float]) -> str:
    return "[" + " ".join(f"{v:.3f}" for v in values) + "]"


def train(
    cfg: RunConfig, *, resume: bool = False, progress: bool = True, log: Callable[[str], None] = print
) -> dict:
    """Train one run described by ``cfg``; write results.json and a checkpoint per epoch into ``cfg.out``."""
    trainer = Trainer(cfg, progress=progress, log=log)
    ckpt_path = Path(cfg.out) / CHECKPOINT_NAME
    if resume:
        if not ckpt_path.exists():
            raise DataError(
                f"--resume: no checkpoint at {ckpt_path}; run without --resume to start this run."
            )
        trainer.resume()
    elif ckpt_path.exists():
        raise ConfigError(
            f"{cfg.out} already holds a run (checkpoint.pt); pass --resume to continue it or choose another --out."
        )
    return trainer.run()
