"""results.json and checkpoint.pt: atomic writes, strict JSON, weights_only loading, resume fingerprint."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from analogdecorr import atomic, checkpoint, results
from analogdecorr.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from analogdecorr.config import RunConfig, resolve
from analogdecorr.errors import ConfigError, DataError
from analogdecorr.results import Results, read_results, versions, write_json_atomic


def _row(epoch: int, **extra) -> dict:
    row = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5, "test_loss": 1.1 / epoch,
           "test_acc": 0.4, "corr_before": [0.3, 0.2], "corr_after": [0.1, 0.05], "seconds": 0.5}
    row.update(extra)
    return row


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------ JSON
def test_write_json_atomic_round_trip_and_conversions(tmp_path):
    path = tmp_path / "sub" / "results.json"  # parent folders are created
    obj = {"t": (1, 2), "nan": float("nan"), "inf": [float("inf"), -float("inf")], "np": np.float32(0.5),
           "npi": np.int64(7), "arr": np.arange(3), "tensor": torch.tensor([1.5, 2.5]),
           "scalar": torch.tensor(3), "path": Path("a/b"), "nested": {1: None, "ok": True}}
    assert write_json_atomic(path, obj) == path
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    back = json.loads(text)
    assert back == {"t": [1, 2], "nan": None, "inf": [None, None], "np": 0.5, "npi": 7, "arr": [0, 1, 2],
                    "tensor": [1.5, 2.5], "scalar": 3, "path": "a/b", "nested": {"1": None, "ok": True}}
    assert _files(path.parent) == ["results.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_serialisation_failure_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"epochs": [1, 2, 3]})
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"epochs\[1\]\.bad.*object"):
        write_json_atomic(path, {"epochs": [{"ok": 1}, {"bad": object()}]})
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["results.json"]


def test_failure_while_replacing_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"v": 1})

    def broken_replace(src, dst):
        assert Path(src).read_text().startswith("{")  # the new content was fully written to the temp file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert _files(tmp_path) == ["results.json"]


def test_failure_mid_write_leaves_old_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), results.atomic_write(path, "wb") as f:
        f.write(b"half of the new")
        raise RuntimeError("crash mid-way")
    assert path.read_bytes() == b"old" and _files(tmp_path) == ["out.bin"]


def test_read_results_errors(tmp_path):
    with pytest.raises(DataError, match="no results file"):
        read_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"config": {}, "epochs": [')
    with pytest.raises(DataError, match=r"corrupt.*line 1, column \d+"):
        read_results(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(DataError, match="not an analogdecorr results file"):
        read_results(bad)
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="not a text file"):
        read_results(bad)


def test_read_results_accepts_a_run_folder(tmp_path):
    Results({"rule": "np"}, {}).save(tmp_path / "results.json")
    assert read_results(tmp_path)["config"] == {"rule": "np"}


def test_versions(monkeypatch):
    v = versions()
    assert set(v) == {"python", "torch", "aihwkit", "numpy", "amaranth", "analogdecorr"}
    assert v["torch"] == torch.__version__.split("+")[0] and v["numpy"] == np.__version__
    assert v["python"].count(".") == 2
    monkeypatch.setattr(results, "VERSION_PACKAGES", ("numpy", "no-such-package-analogdecorr-test"))
    assert versions()["no-such-package-analogdecorr-test"] == "not installed"


def test_results_class_schema_and_reload(tmp_path):
    cfg = RunConfig()
    r = Results(config=cfg.to_dict(), versions=versions())
    r.add_epoch(_row(1))
    r.add_epoch(_row(2, update_cosine=float("nan")))
    r.extra["drift"] = [{"t_seconds": 1, "acc": 0.8, "compensated": True}]
    path = tmp_path / "results.json"
    r.save(path)
    data = read_results(path)
    assert list(data)[:3] == ["config", "versions", "epochs"]
    assert data["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert [e["epoch"] for e in data["epochs"]] == [1, 2]
    assert data["epochs"][1]["update_cosine"] is None
    assert data["drift"][0]["compensated"] is True
    again = Results.load(path)
    assert again.epochs == data["epochs"] and again.extra["drift"] == data["drift"]
    again.add_epoch(_row(3))
    again.save(path)  # overwrite: still a full valid file
    assert len(read_results(path)["epochs"]) == 3


def test_results_rejects_incomplete_rows_and_reserved_sections():
    r = Results({}, {})
    with pytest.raises(ValueError, match="test_acc"):
        r.add_epoch({"epoch": 1, "train_loss": 1.0})
    r.extra["epochs"] = []
    with pytest.raises(ValueError, match="epochs"):
        r.to_dict()


# ------------------------------------------------------------------------------------- checkpoints
def _full_state(cfg: RunConfig) -> tuple[dict, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    np.random.seed(3)
    gen = torch.Generator().manual_seed(5)
    state = {
        "epoch": 4,
        "fingerprint": cfg.fingerprint(),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "np_rng": gen.get_state(),
        "numpy_global_rng": np.random.get_state(),  # tuple with an ndarray: converted to a tensor
        "numpy_generator": np.random.default_rng(1).bit_generator.state,  # 128-bit ints
        "python_rng": random.getstate(),
        "array": np.linspace(0, 1, 5),
        "np_scalar": np.float64(0.25),
        "path": Path("runs/x"),
        "epochs": [_row(1), _row(2)],
    }
    return state, model, opt


def test_checkpoint_loads_with_weights_only(tmp_path):
    cfg = RunConfig()
    state, model, opt = _full_state(cfg)
    path = tmp_path / "checkpoint.pt"
    assert save_checkpoint(path, state) == path
    assert _files(tmp_path) == ["checkpoint.pt"]

    raw = torch.load(path, weights_only=True)  # the contract: no pickled custom classes
    assert raw["epoch"] == 4 and raw["np_scalar"] == 0.25 and raw["path"] == "runs/x"
    assert isinstance(raw["array"], torch.Tensor) and torch.allclose(raw["array"], torch.linspace(0, 1, 5,
                                                                                                  dtype=torch.float64))

    loaded = load_checkpoint(path, cfg.fingerprint())
    assert checkpoint.FORMAT_KEY not in loaded
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    fresh.load_state_dict(loaded["model"])
    for a, b in zip(fresh.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    opt2 = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    opt2.load_state_dict(loaded["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert loaded["epochs"] == state["epochs"]

    # RNG states restore exactly
    torch.set_rng_state(loaded["torch_rng"])
    a = torch.rand(3)
    torch.set_rng_state(state["torch_rng"])
    assert torch.equal(a, torch.rand(3))
    g = torch.Generator()
    g.set_state(loaded["np_rng"])
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(5)))
    name, keys, pos, has_gauss, cached = loaded["numpy_global_rng"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    x = np.random.rand(3)
    np.random.seed(3)
    assert np.array_equal(x, np.random.rand(3))
    rng = np.random.default_rng()
    rng.bit_generator.state = loaded["numpy_generator"]
    assert rng.random() == np.random.default_rng(1).random()
    random.setstate(loaded["python_rng"])
    y = random.random()
    random.setstate(state["python_rng"])
    assert y == random.random()


def test_checkpoint_refuses_unpicklable_custom_objects(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"fingerprint": {}, "epoch": 1})
    before = path.read_bytes()

    class Custom:
        pass

    with pytest.raises(TypeError, match=r"state\['rule'\]\['helper'\].*Custom"):
        save_checkpoint(path, {"fingerprint": {}, "rule": {"helper": Custom()}})
    with pytest.raises(TypeError, match="object array"):
        save_checkpoint(path, {"fingerprint": {}, "a": np.array([None, 1], dtype=object)})
    with pytest.raises(ValueError, match="fingerprint"):
        save_checkpoint(path, {"epoch": 1})
    assert path.read_bytes() == before and _files(tmp_path) == ["checkpoint.pt"]


def test_checkpoint_write_failure_keeps_old(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"fingerprint": {}, "epoch": 1})
    monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        save_checkpoint(path, {"fingerprint": {}, "epoch": 2})
    monkeypatch.undo()
    assert read_checkpoint(path)["epoch"] == 1 and _files(tmp_path) == ["checkpoint.pt"]


def test_fingerprint_mismatch_names_the_keys(tmp_path):
    path = tmp_path / "checkpoint.pt"
    old = resolve({}, {"rule": "np", "lr": 1e-4, "epochs": 5})
    save_checkpoint(path, {"fingerprint": old.fingerprint(), "epoch": 5})
    new = resolve({}, {"rule": "bp", "lr": 1e-3, "epochs": 5})
    with pytest.raises(ConfigError) as info:
        load_checkpoint(path, new.fingerprint())
    msg = str(info.value)
    assert "rule" in msg and "lr" in msg and '"np" (checkpoint) vs "bp" (now)' in msg
    assert "decor" not in msg and "epochs" not in msg and str(path) in msg
    # more epochs, another folder: resumable
    longer = resolve({}, {"rule": "np", "lr": 1e-4, "epochs": 20, "out": str(tmp_path / "x")})
    assert load_checkpoint(path, longer.fingerprint())["epoch"] == 5
    assert load_checkpoint(path, None)["epoch"] == 5


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(DataError, match="no checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt", {})
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"fingerprint": {}, "w": torch.randn(100, 100)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_checkpoint(path, {})
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match="corrupt"):
        load_checkpoint(path, {})
    torch.save({"w": torch.zeros(2)}, path)  # a torch file, but not ours
    with pytest.raises(DataError, match="not an analogdecorr checkpoint"):
        load_checkpoint(path, {})


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_objects_are_refused_not_executed(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"fingerprint": {}, "analogdecorr_checkpoint": 1, "x": _Evil()}, path)
    with pytest.raises(DataError, match=r"not plain tensors.*pickled (posix|os)\.system"):
        load_checkpoint(path, {})
    torch.save({"fingerprint": {}, "analogdecorr_checkpoint": 1, "x": np.float64(1.0)}, path)
    with pytest.raises(DataError, match=r"not plain tensors.*pickled numpy"):
        load_checkpoint(path, {})
