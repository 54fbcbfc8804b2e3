"""``analogdecorr cosim check``: replay the stream a layer's unit saw in training through the exported Verilog.

Steps: read ``RUN/cosim/layer{L}.npz`` (or, given a config, train until K samples are recorded); run the integer
model on the first K samples from the recorded initial state and require it to reproduce the recorded z word
for word (the run used exactly the model); export the unit with the run's format and that stimulus (x ints,
learn bits, initial state) through ``analogdecorr.hdl.export``; run the testbench in Verilator; report
bit-identity, or the first differing sample and word. amaranth and the simulators are imported only here.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, EnvironmentMismatchError
from ..fixed.format import UnitFormat
from .record import Recording, load_recording, recording_path

VERILATOR_HINT = (
    "Verilator is not installed (no 'verilator' on PATH); install Verilator >= 5.0 "
    "(Debian/Ubuntu: sudo apt-get install verilator; macOS: brew install verilator) and run again"
)


def model_replay(rec: Recording, steps: int | None = None, fmt: UnitFormat | None = None) -> tuple[np.ndarray, Any]:
    """The integer model over the first ``steps`` recorded samples from the recorded initial state:
    (z ints, final state). ``fmt`` defaults to the run's format."""
    from ..fixed import model

    fmt = fmt or rec.fmt
    n = rec.samples if steps is None else min(steps, rec.samples)
    res = model.run(fmt, rec.x[:n], learn=rec.learn[:n], state=_state(rec))
    return np.asarray(res.z), res.state


def first_difference(expected: np.ndarray, got: np.ndarray) -> dict[str, int] | None:
    """The first (sample, word) where two z streams differ, with both values; None when identical."""
    n = min(len(expected), len(got))
    diff = np.argwhere(expected[:n] != got[:n])
    if diff.size == 0:
        return None
    t, j = (int(v) for v in diff[0])
    return {"sample": t, "word": j, "expected": int(expected[t, j]), "got": int(got[t, j])}


def verilator_missing() -> str | None:
    return None if shutil.which("verilator") else VERILATOR_HINT


def _record_from_config(path: Path, layer: int, steps: int) -> Path:
    """Train the configured run (fixed numerics) until ``steps`` samples of ``layer`` are recorded (at least
    ``steps``, at most the config's cosim_record if larger: whole epochs are trained)."""
    from ..config import load_config
    from ..train import CHECKPOINT_NAME, Trainer

    cfg = load_config(path)
    if cfg.decor_numerics != "fixed":
        raise ConfigError(f"{path} trains with decor_numerics = {cfg.decor_numerics!r}; set decor_numerics = "
                          "\"fixed\" in it to record the unit's stream")
    out = Path(cfg.out)
    rec_path = recording_path(out, layer)
    if rec_path.is_file() and load_recording(rec_path).samples >= steps:
        return out
    if (out / CHECKPOINT_NAME).exists():
        raise ConfigError(f"{out} already holds a run with fewer than {steps} recorded samples of layer {layer}; "
                          "set another out in the config (or --steps at most what was recorded)")
    cfg = dataclasses.replace(cfg, cosim_record=max(steps, cfg.cosim_record))
    trainer = Trainer(cfg, progress=False, log=lambda s: None)
    decor = dict(trainer.net.decorrelators).get(layer)
    if decor is None:
        raise ConfigError(_no_layer(layer, [i for i, _ in trainer.net.decorrelators]))
    trainer.run(stop_when=lambda: decor.recorder.n >= steps)
    return out


def _no_layer(layer: int, layers: list[int]) -> str:
    return f"layer {layer} has no decorrelator in this run; choose --layer from {layers}"


def check(
    source: str | Path,
    *,
    layer: int = 0,
    steps: int = 10_000,
    lanes: int | None = None,
    out_dir: str | Path | None = None,
    hw_format: UnitFormat | None = None,
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Replay ``steps`` recorded samples of ``layer`` through the Verilog of the run's unit (or of
    ``hw_format``: a unit built from another format, which must then show a mismatch). See the module doc."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps must be a positive number of samples, got {steps!r}")
    src = Path(source)
    if not src.exists():
        raise DataError(f"{src} does not exist; give a run folder (trained with --decor-numerics fixed) or a config")
    missing = verilator_missing()
    if missing and not src.is_dir():  # before training for minutes
        raise EnvironmentMismatchError(missing)
    run_dir = src if src.is_dir() else _record_from_config(src, layer, steps)
    path = recording_path(run_dir, layer)
    if not path.is_file() and (run_dir / "cosim").is_dir():
        have = sorted(int(p.stem[5:]) for p in (run_dir / "cosim").glob("layer*.npz"))
        raise DataError(_no_layer(layer, have))
    rec = load_recording(path)
    if rec.samples < steps:
        raise DataError(f"{path} holds {rec.samples} samples, fewer than --steps {steps}; pass --steps "
                        f"{rec.samples} or train longer with --cosim-record {steps}")
    if missing:
        raise EnvironmentMismatchError(missing)
    t0 = time.perf_counter()
    z_model, _ = model_replay(rec, steps)
    model_diff = first_difference(rec.z[:steps], z_model)
    if model_diff is not None:
        raise DataError(
            f"the integer model does not reproduce the recorded stream of layer {layer} (first at sample "
            f"{model_diff['sample']}, word {model_diff['word']}): the run was made with another model version; "
            "record it again with this analogdecorr"
        )
    t_model = time.perf_counter() - t0
    hw = hw_format or rec.fmt
    target = Path(out_dir) if out_dir is not None else run_dir / "cosim" / f"check_layer{layer}"
    verdict = _export_and_verify(hw, rec, steps, lanes, target, timeout)
    first = verdict.get("first_mismatch")
    return {
        "layer": layer,
        "samples": steps,
        "recording": str(path),
        "format": rec.fmt.to_dict(),
        "hw_format": hw.to_dict(),
        "bit_exact": bool(verdict["bit_exact"]),
        "first_mismatch": first,
        "export_dir": str(target),
        "model_seconds": round(t_model, 3),
        "verilator": verdict,
    }


def _export_and_verify(hw: UnitFormat, rec: Recording, steps: int, lanes: int | None, target: Path,
                       timeout: float) -> dict[str, Any]:
    """Export the unit of ``hw`` with the recorded stimulus, make the run's z the expected z, run Verilator.

    The export computes its expected z with the integer model of ``hw``; ``z.hex`` is then replaced by the z
    the training run recorded (the same words when hw is the run's format: ``check`` proved the model
    reproduces them), so the testbench compares the Verilog with the run itself, and a unit built from another
    format shows its first differing sample and word.
    """
    from ..hdl import export as hdl_export
    from ..hdl import verify as hdl_verify

    if not hasattr(hdl_export, "Stimulus"):
        raise EnvironmentMismatchError(
            "this analogdecorr's HDL export cannot replay a recorded stream (it has no Stimulus; the unit v2 "
            "export adds it); update analogdecorr"
        )
    if hw.size != rec.fmt.size or hw.width != rec.fmt.width:
        raise ConfigError(f"the unit to check has d = {hw.size}, W = {hw.width} but the run's layer {rec.layer} "
                          f"has d = {rec.fmt.size}, W = {rec.fmt.width}; use a unit of the run's size and width")
    mu0 = None if not np.any(rec.mu0) else rec.mu0
    stim = hdl_export.Stimulus(rec.x[:steps], rec.learn[:steps], r0=rec.R0, mu0=mu0)
    hdl_export.export(hw, lanes, target, stimulus=stim)
    (target / "z.hex").write_text(hdl_export.hex_lines(rec.z[:steps], hw.width))
    res = hdl_verify.verify(target, simulators=("verilator",), timeout=timeout)
    v = res["simulators"]["verilator"]
    return {"bit_exact": bool(v["bit_exact"]), "first_mismatch": v.get("first_mismatch"),
            "mismatches": v.get("mismatches"), "z_checked": v.get("z_checked"), "cycles": v.get("cycles"),
            "cycles_per_sample": v.get("cycles_per_sample"), "lanes": res.get("lanes"),
            "build_seconds": v.get("build_seconds"), "run_seconds": v.get("run_seconds")}


def _state(rec: Recording) -> Any:
    from ..fixed.model import UnitState

    return UnitState(rec.R0, rec.mu0, rec.lfsr0)


def format_report(rep: dict[str, Any]) -> str:
    """The human-readable verdict (one line, plus the first mismatch)."""
    head = f"layer {rep['layer']}: {rep['samples']} samples (d = {rep['format']['size']}) through Verilator: "
    if rep["bit_exact"]:
        return head + "bit-identical to the training run"
    m = rep["first_mismatch"] or {}
    return head + (f"DIFFERS, first at sample {m.get('sample')} word {m.get('word')} "
                   f"({m.get('kind', 'z')}: expected {m.get('expected')}, got {m.get('got')})")
