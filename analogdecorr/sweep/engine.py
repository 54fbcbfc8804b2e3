"""Running a sweep's trials as Ray core tasks (one CPU each), resuming from what is on disk.

A trial's folder is ``<out>/runs/<config hash>``. A trial whose results.json holds every epoch (and, on the
analog backend, the drift evaluation) or that diverged (diverged.json) is finished and never run again; one
with a checkpoint resumes from it; the others start fresh. Without ``address`` a local Ray cluster with
``jobs`` CPUs is started (and stopped at the end); with ``address`` the sweep joins that cluster, whose
nodes need analogdecorr's dependencies and must see ``out`` (a shared file system, as for Ray Tune's storage).
If Ray is already initialised in this process (a notebook, a test) that connection is used as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..errors import ConfigError, EnvironmentMismatchError
from .spec import CHECKPOINT, DIVERGED, RESULTS, RUN_CONFIG, TRIAL_FILE, SweepSpec, Trial

CONFIG_FILE = RUN_CONFIG


@dataclass
class Outcome:
    """What happened to one trial in this invocation."""

    trial: Trial
    status: str  # "done", "diverged" or "failed"
    how: str  # "before" (finished on disk already), "new", "resumed"
    seconds: float = 0.0
    error: str = ""


@dataclass
class SweepReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, *, status: str | None = None, how: str | None = None) -> int:
        return sum((status is None or o.status == status) and (how is None or o.how == how)
                   for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


# --------------------------------------------------------------------------------------- on-disk state
def finished_status(trial: Trial) -> str | None:
    """"done" or "diverged" if the trial's folder holds a finished run, else None."""
    if (trial.out / DIVERGED).exists():
        return "diverged"
    try:
        data = json.loads((trial.out / RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cfg = trial.config
    if len(data.get("epochs", [])) < cfg.epochs:
        return None
    if cfg.backend == "analog" and cfg.drift_times and "drift" not in data:
        return None
    return "done"


def write_trial_files(trial: Trial) -> None:
    """config.toml (``analogdecorr train --config`` reruns the trial) and trial.json (its setting and seed)."""
    from ..config import to_toml
    from ..results import write_json_atomic

    text = to_toml(trial.config)
    path = trial.out / CONFIG_FILE
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
    if not (trial.out / TRIAL_FILE).exists():
        write_json_atomic(trial.out / TRIAL_FILE, {"setting": dict(trial.setting), "seed": trial.seed,
                                                   "overrides": dict(trial.overrides), "key": trial.key})


# ----------------------------------------------------------------------------------------- the task
def train_trial(config: dict[str, Any], threads: int = 1) -> dict[str, Any]:
    """Train (or resume) one trial in this process; never raises: returns status, seconds, results and error.

    Runs inside a Ray worker (one CPU, ``threads`` torch threads) or in-process.
    """
    import warnings

    import torch

    from ..config import resolve
    from ..errors import DivergenceError
    from ..results import write_json_atomic
    from ..train import train

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    cfg = resolve({}, config)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    resumed = (out / CHECKPOINT).exists()
    result: dict[str, Any] = {"status": "done", "resumed": resumed, "error": "", "results": None}
    with open(out / "train.log", "a", encoding="utf-8") as logf:

        def log(msg: str) -> None:
            logf.write(msg + "\n")
            logf.flush()

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result["results"] = train(cfg, resume=resumed, progress=False, log=log)
            for w in caught:
                log(f"warning: {w.message}")
        except DivergenceError as e:  # a diverged run is a result of the sweep, not a crash
            write_json_atomic(out / DIVERGED, {"error": str(e)})
            log(f"diverged: {e}")
            result.update(status="diverged", error=str(e))
        except Exception as e:  # noqa: BLE001 - reported per trial; the sweep goes on
            log(traceback.format_exc())
            result.update(status="failed", error=f"{type(e).__name__}: {e}")
    result["seconds"] = time.perf_counter() - t0
    return result


# ------------------------------------------------------------------------------------------- Ray
def _check_address(address: str) -> None:
    """ConfigError in a second (instead of Ray's minute of retries) if nothing listens at ``address``."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001) "
                          "or 'auto'")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            pass
    except OSError as e:
        raise ConfigError(
            f"no Ray cluster at --address {address} ({e.strerror or e}); start one there with `ray start --head "
            f"--port {port}`, or leave out --address to run on a local cluster"
        ) from None


#: ray.init tries before giving up: on an overloaded machine Ray's node can miss its start-up deadline once.
START_ATTEMPTS = 3


def connect(address: str | None, jobs: int | None) -> bool:
    """Make sure Ray is initialised; True if this call started it (so the caller shuts it down)."""
    import ray

    if address:
        _check_address(address)
    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError) as e:
            raise ConfigError(
                f"cannot join the Ray cluster at --address {address}: {str(e).splitlines()[0]}; check the "
                "address (`ray status` on the head node prints it) and, if the cluster uses token "
                "authentication, set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH as Ray's token-auth guide says"
            ) from None
        return True
    # address="local": always a new cluster of our own, never one that RAY_ADDRESS or an earlier `ray start`
    # on this machine (/tmp/ray/ray_current_cluster, even a dead one) would make ray.init() join
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ray.init(address="local", num_cpus=jobs or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            return True
        except Exception as e:  # Ray raises a bare Exception when its node misses its start-up deadline
            if "timed out during startup" not in str(e):
                raise
            ray.shutdown()
            if attempt == START_ATTEMPTS:
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                raise EnvironmentMismatchError(
                    f"Ray's local cluster did not start in {START_ATTEMPTS} attempts (its node timed out during "
                    f"start-up; load average {load:.1f} on {os.cpu_count()} CPUs): run the sweep again when the "
                    "machine is less busy (finished runs are kept)"
                ) from None
            time.sleep(5.0 * attempt)
    return True


def run_trials(
    trials: Sequence[Trial],
    *,
    address: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
    on_outcome: Callable[[Outcome], None] | None = None,
    follow_up: Callable[[Outcome], Sequence[Trial]] | None = None,
) -> SweepReport:
    """Run every unfinished trial on Ray (at most ``jobs`` at a time if given) and report every trial.

    ``follow_up`` is called after each outcome and returns trials that became runnable (a tuned row's final
    runs once its search is complete); they go before the pending ones, so rows finish in order.
    Ctrl-C (or an exception from ``on_outcome``) cancels the trials in flight; their last checkpoints are
    kept, so the next call resumes them.
    """
    from tqdm.auto import tqdm

    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs {jobs} must be >= 1")
    report = SweepReport()
    todo = []
    for trial in trials:
        status = finished_status(trial)
        if status:
            report.outcomes.append(Outcome(trial, status, "before"))
        else:
            todo.append(trial)
    bar = tqdm(total=len(trials), initial=len(trials) - len(todo), desc="runs", unit="run", disable=not progress)
    if not todo:
        bar.close()
        return report
    import ray

    started = False
    limit = jobs or len(todo)
    pending = list(todo)
    in_flight: dict[Any, Trial] = {}
    try:
        started = connect(address, jobs)
        remote = ray.remote(num_cpus=1, max_retries=0)(train_trial)
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                trial = pending.pop(0)
                write_trial_files(trial)
                in_flight[remote.remote(trial.config.to_dict())] = trial
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                trial = in_flight.pop(ref)
                outcome = _outcome(trial, ref)
                report.outcomes.append(outcome)
                bar.update(1)
                if outcome.status != "done":
                    bar.write(f"{trial.label}: {outcome.status}: {outcome.error.splitlines()[0][:200]}")
                if on_outcome is not None:
                    on_outcome(outcome)
                if follow_up is not None:
                    fresh = []
                    for new in follow_up(outcome):
                        status = finished_status(new)
                        if status:
                            report.outcomes.append(Outcome(new, status, "before"))
                        else:
                            fresh.append(new)
                    bar.total += len(fresh)
                    bar.refresh()
                    pending[:0] = fresh
    except BaseException:
        refs = list(in_flight)
        for ref in refs:
            ray.cancel(ref, force=True)
        if refs:  # cancelling is asynchronous: wait until the killed workers are gone, so that none of them
            # still writes into its run folder when a restarted sweep resumes that run
            with contextlib.suppress(Exception):
                ray.wait(refs, num_returns=len(refs), timeout=60)
        raise
    finally:
        bar.close()
        if started:
            ray.shutdown()
    return report


def _outcome(trial: Trial, ref: Any) -> Outcome:
    import ray

    try:
        res = ray.get(ref)
    except Exception as e:  # noqa: BLE001 - the worker died (e.g. out of memory): report, go on
        return Outcome(trial, "failed", "new", 0.0, f"{type(e).__name__}: {str(e).splitlines()[0]}")
    if res["results"] is not None and not (trial.out / RESULTS).exists():
        # a cluster without a shared file system: keep the results on the driver's side
        from ..results import write_json_atomic

        write_json_atomic(trial.out / RESULTS, res["results"])
    return Outcome(trial, res["status"], "resumed" if res["resumed"] else "new", res["seconds"], res["error"])


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    address: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
    keep: Callable[[Trial], bool] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> tuple[list[Trial], SweepReport]:
    """Expand and validate ``spec`` (every trial, before anything runs), run the unfinished trials on Ray and
    write the summary (summary.md, summary.csv, summary.png) into ``out``. ``keep`` picks a subset of trials
    to run (the summary still covers every trial with results on disk). Returns (all trials, report).

    A tuned sweep ([tune]) runs each row's search, then, as soon as the row's search is complete, its final
    runs at the chosen setting (:mod:`analogdecorr.sweep.tune`); it also writes search.md/.csv and chosen.toml.
    """
    from .summary import write_summary

    if spec.tune:
        return _run_tuned(spec, out, address=address, jobs=jobs, progress=progress, keep=keep,
                          on_outcome=on_outcome)
    trials = spec.trials(out)
    chosen = [t for t in trials if keep is None or keep(t)]
    Path(out).mkdir(parents=True, exist_ok=True)
    report = run_trials(chosen, address=address, jobs=jobs, progress=progress, on_outcome=on_outcome)
    write_summary(spec, trials, out)
    return trials, report


def _run_tuned(
    spec: SweepSpec,
    out: str | Path,
    *,
    address: str | None,
    jobs: int | None,
    progress: bool,
    keep: Callable[[Trial], bool] | None,
    on_outcome: Callable[[Outcome], None] | None,
) -> tuple[list[Trial], SweepReport]:
    """The two phases of a tuned sweep on one run queue: rows in grid order, each row's final runs queued the
    moment its last search run finishes (a row already searched on disk queues them at once)."""
    from .tune import all_trials, final_trials, row_key, tuned_rows, write_tuned_summary

    Path(out).mkdir(parents=True, exist_ok=True)
    search, rows, _ = all_trials(spec, out)
    by_row: dict[tuple, list[Trial]] = {}
    for t in search:
        by_row.setdefault(row_key(spec, t.setting), []).append(t)
    search_keys = {t.key for t in search}  # a final seed equal to a search seed is that search run
    queued: set[tuple] = set()
    initial: list[Trial] = []
    for r in rows:
        initial += r.trials
        if r.complete:
            queued.add(r.row)
            initial += [t for t in final_trials(spec, r, out) if t.key not in search_keys]

    def follow_up(outcome: Outcome) -> list[Trial]:
        key = row_key(spec, outcome.trial.setting)
        if key in queued or key not in by_row:
            return []
        (row,) = tuned_rows(spec, by_row[key])  # re-read this row from disk
        if not row.complete:
            return []
        queued.add(key)
        return [t for t in final_trials(spec, row, out)
                if t.key not in search_keys and (keep is None or keep(t))]

    chosen = [t for t in initial if keep is None or keep(t)]
    report = run_trials(chosen, address=address, jobs=jobs, progress=progress, on_outcome=on_outcome,
                        follow_up=follow_up)
    write_tuned_summary(spec, out)
    _, _, finals = all_trials(spec, out)
    return search + [t for t in finals if t.key not in search_keys], report
