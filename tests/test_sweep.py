"""The sweep engine on a real local Ray cluster (2 workers, started once for the module): an 8-run sweep, a
stopped sweep that resumes without redoing finished runs, agreement with `analogdecorr train` run by run, and
the errors that must come before any run starts."""

from __future__ import annotations

import collections
import csv
import json
import socket
import statistics
import time
from pathlib import Path

import pytest
import torch
from script_module import load_script

from analogdecorr.cli import main
from analogdecorr.config import resolve
from analogdecorr.errors import ConfigError
from analogdecorr.sweep import load_sweep, parse_sweep, run_sweep
from analogdecorr.sweep.engine import finished_status
from analogdecorr.train import train

TINY = """
[sweep]
seeds = [0, 1]
metric = "val_acc"

[base]
dataset = "digits"
hidden = [16]
epochs = 2
lr = 1e-3
decor_lr = 1e-3

[grid]
rule = ["bp", "np"]
decor = ["none", "scaled"]
"""


@pytest.fixture(scope="module")
def ray_cluster():
    """One local 2-CPU Ray cluster for the module (starting Ray costs seconds)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_sweep(ray_cluster, tmp_path_factory):
    """The 8-run sweep, run once on the cluster: (spec, trials, report, out, seconds)."""
    root = tmp_path_factory.mktemp("tiny")
    path = root / "tiny.toml"
    path.write_text(TINY)
    spec = load_sweep(path)
    t0 = time.perf_counter()
    trials, report = run_sweep(spec, root / "out", progress=False)
    return spec, trials, report, root / "out", time.perf_counter() - t0


def epochs_without_time(results: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in results["epochs"]]


def test_eight_run_sweep_on_two_workers(tiny_sweep, ray_cluster):
    spec, trials, report, out, _ = tiny_sweep
    assert ray_cluster.cluster_resources()["CPU"] == 2
    assert len(trials) == 8 and report.count(status="done", how="new") == 8
    assert len({t.key for t in trials}) == 8 and all(t.out.parent == out.absolute() / "runs" for t in trials)
    for t in trials:
        res = json.loads((t.out / "results.json").read_text())
        assert res["config"]["rule"] == dict(t.setting)["rule"] and res["config"]["seed"] == t.seed
        assert len(res["epochs"]) == 2 and res["summary"]["best_val_epoch"] in (1, 2)
        assert json.loads((t.out / "trial.json").read_text())["setting"] == dict(t.setting)
    # one CSV row per setting: mean over seeds of val_acc at each run's best-validation epoch
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["rule"], r["decor"]) for r in rows] == [("bp", "none"), ("bp", "scaled"), ("np", "none"),
                                                        ("np", "scaled")]
    for r in rows:
        runs = [json.loads((t.out / "results.json").read_text()) for t in trials
                if dict(t.setting) == {"rule": r["rule"], "decor": r["decor"]}]
        best = [max(x["epochs"], key=lambda e: (e["val_acc"], -e["epoch"])) for x in runs]
        assert float(r["val_acc_mean"]) == pytest.approx(statistics.fmean(b["val_acc"] for b in best), rel=1e-5)
        assert float(r["test_acc_selected_mean"]) == pytest.approx(
            statistics.fmean(b["test_acc"] for b in best), rel=1e-5)
        assert r["seeds"] == "2" and r["done"] == "2"
    md = (out / "summary.md").read_text()
    assert md.count("\n| bp |") == 2 and md.count(" * |") == 1 and "Best setting:" in md
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_a_float_sweep_gives_the_numbers_of_its_runs_trained_one_by_one(tiny_sweep, tmp_path):
    _, trials, _, _, _ = tiny_sweep
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the sweep's workers (one CPU per run)
    try:
        for i, t in enumerate(trials):
            alone = tmp_path / f"alone{i}"
            code = main(["train", "--config", str(t.out / "config.toml"), "--out", str(alone), "--no-progress",
                         "--no-plots"])
            assert code == 0
            a = json.loads((alone / "results.json").read_text())
            b = json.loads((t.out / "results.json").read_text())
            assert epochs_without_time(a) == epochs_without_time(b), t.label
    finally:
        torch.set_num_threads(threads)


def test_a_stopped_sweep_resumes_without_redoing_finished_runs(ray_cluster, tmp_path):
    spec = parse_sweep(_toml(TINY.replace("lr = 1e-3\n", "lr = 2e-3\n")))
    out = tmp_path / "out"
    trials = spec.trials(out)
    # the last trial was stopped after its first epoch (its checkpoint is on disk)
    last = trials[-1]

    def stop_after_epoch_1(msg: str) -> None:
        if msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(last.config, progress=False, log=stop_after_epoch_1)
    assert (last.out / "checkpoint.pt").exists() and finished_status(last) is None

    seen = []

    def stop_after_three(outcome) -> None:
        seen.append(outcome)
        if len(seen) == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the driver

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, jobs=2, progress=False, on_outcome=stop_after_three)
    finished = {t.key for t in trials if finished_status(t)}
    assert 3 <= len(finished) < 8 and last.key not in finished
    mtimes = {k: (out / "runs" / k / "results.json").stat().st_mtime_ns for k in finished}

    _, report = run_sweep(spec, out, jobs=2, progress=False)
    assert all(finished_status(t) == "done" for t in trials)
    by_key = {o.trial.key: o for o in report.outcomes}
    assert {k for k, o in by_key.items() if o.how == "before"} == finished
    assert by_key[last.key].how == "resumed"
    assert report.count(how="new") + report.count(how="resumed") == 8 - len(finished)
    assert {k: (out / "runs" / k / "results.json").stat().st_mtime_ns for k in finished} == mtimes
    # the resumed run kept its first epoch and finished the second
    assert [e["epoch"] for e in json.loads((last.out / "results.json").read_text())["epochs"]] == [1, 2]

    # a third start runs nothing at all
    _, again = run_sweep(spec, out, jobs=2, progress=False)
    assert again.count(how="before") == 8


# --------------------------------------------------------------------------------------------- errors
def _toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def _sweep_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("edit,message", [
    (("lr = 1e-3\n", "lrr = 1e-3\n"),
     r"unknown config key 'lrr' in \[base\] \(did you mean 'lr'\?\); choose from .*batch_size"),
    (("decor = [", "decorr = ["), r"unknown config key 'decorr' in \[grid\] \(did you mean 'decor'\?\)"),
    (("metric = ", "metrik = "),
     r"unknown key 'metrik' in \[sweep\] \(did you mean 'metric'\?\); choose from .*seeds"),
    (("[grid]", "[gird]"), r"unknown table 'gird' \(did you mean 'grid'\?\)"),
    (("metric = \"val_acc\"", "metric = \"val_accuracy\""),
     r"unknown metric 'val_accuracy' in \[sweep\] \(did you mean 'val_acc'\?\); choose from .*test_acc"),
])
def test_unknown_keys_name_the_closest_valid_one(tmp_path, capsys, edit, message):
    path = _sweep_file(tmp_path, TINY.replace(*edit))
    with pytest.raises(ConfigError, match=message):
        load_sweep(path)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sweep file") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_a_key_swept_to_an_invalid_value_names_the_run_and_value_before_any_run(tmp_path, capsys):
    path = _sweep_file(tmp_path, TINY.replace('decor = ["none", "scaled"]', 'decor = ["none", "scaldd"]'))
    code = main(["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "run rule=bp decor=scaldd seed=0: unknown decor 'scaldd'" in err and "'scaled'" in err
    assert not (tmp_path / "o" / "runs").exists()  # nothing started
    path = _sweep_file(tmp_path, TINY.replace("[grid]", "[grid]\nlr = [1e-3, -1.0]"))
    with pytest.raises(ConfigError, match="run lr=-1 rule=bp decor=none seed=0: lr=-1.0 must be"):
        load_sweep(path).trials(tmp_path / "o")


def test_selection_on_validation_needs_a_validation_split(tmp_path):
    spec = parse_sweep(_toml(TINY.replace("epochs = 2", "epochs = 2\nval_frac = 0")))
    with pytest.raises(ConfigError, match="val_frac = 0 .* select = \"last\""):
        spec.trials(tmp_path)
    ok = parse_sweep(_toml(TINY.replace("epochs = 2", "epochs = 2\nval_frac = 0")
                           .replace('metric = "val_acc"', 'metric = "test_acc"\nselect = "last"')))
    assert len(ok.trials(tmp_path)) == 8


def test_address_with_no_cluster_is_one_line_error(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = _sweep_file(tmp_path, TINY)
    t0 = time.perf_counter()
    code = main(["sweep", str(path), "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "o"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - t0 < 30
    assert err.startswith(f"error: no Ray cluster at --address 127.0.0.1:{port}") and err.count("\n") == 1
    assert "ray start --head" in err


def test_named_variants_samples_and_excludes_expand_in_order(tmp_path):
    spec = parse_sweep(_toml("""
[sweep]
seeds = [3]
select = "last"
metric = "test_acc"
[base]
hidden = [8]
epochs = 1
val_frac = 0
[grid]
dataset = ["digits", "mnist1d"]
[grid.variant]
np-decor = {rule = "np", decor = "offdiag", decor_lr = 3e-5}
bp = {rule = "bp", decor = "none"}
[sample]
n = 3
seed = 7
lr = {log_uniform = [1e-4, 1e-2]}
batch_size = {choice = [32, 64]}
[[exclude]]
dataset = "mnist1d"
variant = ["bp"]
"""))
    trials = spec.trials(tmp_path)
    assert spec.axis_names == ["dataset", "variant", "sample"]
    assert [dict(t.setting)["variant"] for t in trials[::3]] == ["np-decor", "bp", "np-decor"]
    assert len(trials) == 9 and all(t.seed == 3 for t in trials)
    lrs = [t.config.lr for t in trials[:3]]
    assert len(set(lrs)) == 3 and all(1e-4 <= x <= 1e-2 for x in lrs)
    assert {t.config.batch_size for t in trials} <= {32, 64}
    assert trials[0].config.decor == "offdiag" and trials[0].config.decor_lr == 3e-5
    # the same file draws the same samples; the run folder is the config hash, not the sweep folder
    assert [t.config.lr for t in spec.trials(tmp_path)[:3]] == lrs
    tiny = parse_sweep(_toml(TINY))
    assert tiny.trials(tmp_path)[0].key == tiny.trials(tmp_path / "x")[0].key


def test_validation_metrics_and_the_selected_epoch_in_results(tmp_path):
    cfg = resolve({}, {"dataset": "digits", "hidden": "16", "epochs": 3, "rule": "bp", "decor": "none",
                       "lr": 1e-3, "out": str(tmp_path / "r"), "val_frac": 0.2})
    lines: list[str] = []
    res = train(cfg, progress=False, log=lines.append)
    best = max(res["epochs"], key=lambda e: (e["val_acc"], -e["epoch"]))
    assert all(0 <= e["val_acc"] <= 1 and e["val_loss"] > 0 for e in res["epochs"])
    saved = json.loads((tmp_path / "r" / "results.json").read_text())["summary"]
    assert saved == {"best_val_epoch": best["epoch"], "best_val_acc": best["val_acc"],
                     "test_acc_at_best_val": best["test_acc"], "last_epoch": 3,
                     "val_acc_last": res["epochs"][-1]["val_acc"], "test_acc_last": res["epochs"][-1]["test_acc"]}
    assert f"val loss {res['epochs'][0]['val_loss']:.4f} acc {res['epochs'][0]['val_acc']:.3f}" in lines[0]
    lines0: list[str] = []
    cfg0 = resolve({}, {**cfg.to_dict(), "out": str(tmp_path / "r0"), "val_frac": 0, "epochs": 1})
    res0 = train(cfg0, progress=False, log=lines0.append)
    assert res0["epochs"][0]["val_acc"] is None and res0["summary"]["best_val_epoch"] is None
    assert "val loss" not in lines0[0]


# ---------------------------------------------------------------------------------------- the studies
SIMS = Path(__file__).resolve().parents[1] / "sims"


def _script(name: str):
    return load_script(f"sims/{name}.py")


def test_the_studies_sweep_files_expand_to_their_published_runs(tmp_path):
    float_trials = load_sweep(SIMS / "float.toml").trials(tmp_path)
    assert len(float_trials) == 36 and {t.config.val_frac for t in float_trials} == {0.1}
    analog = load_sweep(SIMS / "analog.toml").trials(tmp_path)
    assert len(analog) == 372  # the published study's run count
    fidelity = [t for t in analog if dict(t.setting)["hardware"] == "float"]
    assert {(t.config.backend, t.config.optimizer, t.config.lr, t.config.sigma) for t in fidelity} == {
        ("float", "sgd", 0.02, 0.3)}  # the float rows train with the analog defaults
    assert len(load_sweep(SIMS / "example.toml").trials(tmp_path)) == 12


def test_study_scripts_narrow_and_vary_the_sweep_through_its_checks(tmp_path):
    rf = _script("reproduce_float")
    spec = rf.build_spec(rf.parse_args(["--published", "--datasets", "digits", "--seeds", "0",
                                        "--variants", "NP,NP+decor", "--set", "decor_lr=1e-3"]))
    trials = spec.trials(tmp_path)
    assert [(t.config.rule, t.config.decor, t.config.decor_lr, t.config.val_frac) for t in trials] == [
        ("np", "none", 1e-3, 0.0), ("np", "scaled", 1e-3, 0.0)]
    assert spec.select == "last" and spec.metric == "test_acc"
    with pytest.raises(ConfigError, match="'decor' per row"):
        rf.build_spec(rf.parse_args(["--set", "decor=offdiag"]))
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        rf.build_spec(rf.parse_args(["--set", "lrr=1"]))
    ra = _script("reproduce_analog")
    spec = ra.build_spec(ra.parse_args(["--tasks", "mnist1d", "--hardware", "float", "fp", "--seeds", "1"]))
    trials = spec.trials(tmp_path)
    assert len(trials) == 9  # fp: all 7 methods; float: bp and np+decor only (the file's [[exclude]])
    assert sorted(dict(t.setting)["method"] for t in trials if t.config.backend == "float") == ["bp", "np+decor"]


def test_reproduce_float_reports_a_failed_check_and_exits_1_only_with_strict(tmp_path, monkeypatch):
    """A failed acceptance check is a result (the study runs the script as a part and must go on); a failed run
    is an error either way."""
    rf = _script("reproduce_float")
    table = "| digits: BP+decor >= BP at epoch 2 | FAIL | 86.7% vs 89.1% |\n"
    for code, strict, expected in ((0, False, 0), (0, True, 1), (1, False, 1)):
        monkeypatch.setattr(rf, "run_study", lambda *a, code=code, **k: (code, table))
        assert rf.main(["--out", str(tmp_path), *(["--strict"] if strict else [])]) == expected


def test_a_checkpoint_from_before_the_validation_split_resumes_only_without_it():
    from analogdecorr.checkpoint import differing_keys

    old = resolve({}, {"val_frac": 0}).fingerprint()
    del old["val_frac"]  # written before the field existed: trained on the whole training set
    assert differing_keys(old, resolve({}, {"val_frac": 0}).fingerprint()) == []
    assert differing_keys(old, resolve({}, {}).fingerprint()) == ["val_frac"]  # the default 0.1 is another run


def test_the_where_decorrelation_matters_study_expands_and_every_row_has_its_centring_baseline(tmp_path):
    from analogdecorr.sweep.summary import SettingRow, reference_row
    from analogdecorr.sweep.tune import row_key, row_view

    spec = load_sweep(SIMS / "where_decorrelation_matters.toml")
    search = spec.trials(tmp_path)
    assert spec.row_axes == ["decor", "data"] and spec.search_axes == ["lr", "decor_lr"]
    # none and centre search 3 lrs, the oracle 5 (two below), each rule 3 lrs x 2 decor lrs, on 1 search seed; the
    # two digits MLPs have no scaled, scaled_left or kappa rows; the deep MLP searches lr 0.05 too
    assert len(search) == 3 * (2 * 3 + 5 + 5 * 6) + 2 * (2 * 3 + 5 + 2 * 6) + (2 + 2 * 2) and {
        t.seed for t in search} == {100}
    lrs = collections.defaultdict(set)
    for t in search:
        lrs[dict(t.setting)["decor"], dict(t.setting)["data"]].add(t.config.lr)
    assert lrs["zca", "conv"] == {0.001, 0.003, 0.01, 0.03, 0.1} and lrs["whiten", "conv"] == {0.01, 0.03, 0.1}
    assert lrs["whiten", "deep"] == lrs["none", "deep"] == {0.01, 0.03, 0.05, 0.1}
    assert spec.seeds == [0, 1, 2] and len({t.key for t in search}) == len(search)
    by_data = {dict(t.setting)["data"]: t.config for t in search}
    assert {k: (c.dataset, c.rho if c.dataset == "correlated" else None, c.model, c.hidden)
            for k, c in by_data.items()} == {
        "corr0.5": ("correlated", 0.5, "mlp", (100,)), "corr0.99": ("correlated", 0.99, "mlp", (100,)),
        "digits": ("digits", None, "mlp", (100,)), "conv": ("digits", None, "conv", (100,)),
        "deep": ("digits", None, "mlp", (100, 100, 100, 100))}
    assert {(t.config.val_frac, t.config.rule, t.config.backend, t.config.epochs) for t in search} == {
        (0.1, "np", "float", 20)}
    assert {dict(t.setting)["decor"] for t in search if dict(t.setting)["data"] == "conv"} == {
        "none", "centre", "scaled", "scaled_left", "offdiag", "whiten", "kappa", "zca"}
    view = row_view(spec)
    rows = [SettingRow(key, {}) for key in dict.fromkeys(row_key(spec, t.setting) for t in search)]
    assert len(rows) == 3 * 8 + 2 * 5
    for row in rows:  # the p column's reference: centring on the same data
        assert dict(reference_row(view, rows, row).setting) == {**dict(row.setting), "decor": "centre"}


def test_run_folders_named_by_an_older_key_are_adopted_when_their_config_is_the_trials(tmp_path):
    """A field added to RunConfig changes every key: a folder whose config.toml lacks only that field (at its
    default now) is renamed to its trial's key; one whose config differs in a value, or belongs to no trial, stays."""
    from analogdecorr.config import to_toml

    spec = parse_sweep(_toml(TINY))
    out = tmp_path / "out"
    fresh = spec.trials(out)
    runs = out / "runs"
    runs.mkdir(parents=True)

    def old_folder(name: str, trial, **changes) -> Path:
        folder = runs / name
        folder.mkdir()
        text = to_toml(resolve({}, {**trial.config.to_dict(), **changes}))
        lines = [line for line in text.splitlines() if not line.startswith("decor_headroom")]  # "added later"
        (folder / "config.toml").write_text("\n".join(lines) + "\n")
        (folder / "results.json").write_text(json.dumps({"marker": name}))
        return folder

    old_folder("0000000000000000", fresh[0])
    other = old_folder("1111111111111111", fresh[1], lr=5e-3)  # another configuration: not this trial's run
    trials = spec.trials(out)
    assert json.loads((trials[0].out / "results.json").read_text()) == {"marker": "0000000000000000"}
    assert not (runs / "0000000000000000").exists()
    assert other.is_dir() and not trials[1].out.exists()


def test_a_ray_start_up_timeout_is_retried_then_one_line(monkeypatch):
    """On an overloaded machine Ray's node can miss its start-up deadline: connect tries again (a second attempt
    that works starts the sweep), and after START_ATTEMPTS failures it is one error naming the load and the fix."""
    import ray

    from analogdecorr.errors import EnvironmentMismatchError
    from analogdecorr.sweep import engine

    calls = []

    def init(fail_times):
        def fake(**kw):
            calls.append(kw["address"])
            if len(calls) <= fail_times:
                raise Exception("The current node timed out during startup. This could happen because ...")
        return fake

    monkeypatch.setattr(engine.time, "sleep", lambda s: None)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "init", init(1))
    assert engine.connect(None, 2) is True and calls == ["local", "local"]
    calls.clear()
    monkeypatch.setattr(ray, "init", init(engine.START_ATTEMPTS))
    with pytest.raises(EnvironmentMismatchError, match="did not start in 3 attempts.*load average.*again"):
        engine.connect(None, 2)
    assert len(calls) == engine.START_ATTEMPTS
