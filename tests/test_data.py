"""Tests for analogdecorr.data: loaders, file formats, splits, standardisation, batching and batch checks."""

from __future__ import annotations

import gzip
import pickle
import random
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from analogdecorr import data as D
from analogdecorr.data import DATASETS, Dataset, batches, check_batch
from analogdecorr.data import load_dataset as _load_dataset
from analogdecorr.errors import ConfigError, DataError

# ----------------------------------------------------------------------------------------- helpers


def load_dataset(*args, **kwargs) -> Dataset:
    """The loader without a validation split (val_frac = 0), so the split and standardisation tests below check
    the train/test split itself; the validation split has its own tests at the end."""
    kwargs.setdefault("val_frac", 0.0)
    return _load_dataset(*args, **kwargs)


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 00 00 08 ndim, big-endian sizes, data)."""
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return head + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool) -> Path:
    raw = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def make_idx_set(d: Path, *, gz: bool, n_train: int = 30, n_test: int = 12, h: int = 5, w: int = 4, seed=0):
    """Write the four IDX files of a tiny MNIST-like dataset to d; return the raw arrays."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(d / name, arr, gz=gz)
    return arrays


def manual_standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: per-feature (x − mean_train)/std_train, constant features left unscaled."""
    train = train.astype(np.float64)
    test = test.astype(np.float64)
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def cifar_batch(n: int, rng: np.random.Generator) -> dict:
    return {
        b"batch_label": b"testing batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"img%d.png" % i for i in range(n)],
    }


def make_cifar(d: Path, *, per_batch: int = 4, n_test: int = 5, seed: int = 0):
    """Write data_batch_1..5 and test_batch (protocol 2, bytes keys, as in the official tarball)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        b = cifar_batch(n_test if name == "test_batch" else per_batch, rng)
        with open(d / name, "wb") as f:
            pickle.dump(b, f, protocol=2)
        out[name] = b
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("data loading tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("ANALOGDECORR_CACHE_DIR", str(d))
    return d


# ----------------------------------------------------------------------------------------- names, digits


def test_datasets_tuple_matches_contract():
    assert DATASETS == ("digits", "mnist1d", "correlated", "mnist", "fashion_mnist", "cifar10")


@pytest.mark.parametrize("bad, suggestion", [("minst", "mnist"), ("digit", "digits"), ("cifar", "cifar10")])
def test_unknown_dataset_names_closest(bad, suggestion):
    with pytest.raises(ConfigError) as e:
        load_dataset(bad)
    msg = str(e.value)
    assert repr(bad) in msg and f"did you mean {suggestion!r}" in msg
    assert all(n in msg for n in DATASETS)


def test_digits_shapes_and_types():
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset)
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_test) == round(1797 * 0.2)
    assert ds.x_train.shape[1] == 64 and ds.input_shape == (64,) and ds.n_features == 64
    assert ds.n_classes == 10
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.x_test.dtype == torch.float32 and ds.y_test.dtype == torch.int64
    assert set(ds.y_train.tolist()) == set(range(10))
    assert torch.isfinite(ds.x_train).all() and torch.isfinite(ds.x_test).all()
    img = load_dataset("digits", flatten=False)
    assert img.input_shape == (1, 8, 8) and img.x_train.shape[1:] == (1, 8, 8) and img.n_features == 64
    assert torch.equal(img.x_train.reshape(len(img.x_train), -1), ds.x_train)
    assert torch.equal(img.y_test, ds.y_test)


def test_digits_standardised_with_train_stats_only():
    ds = load_dataset("digits", seed=3)
    mean_tr = ds.x_train.double().mean(0)
    std_tr = ds.x_train.double().std(0, unbiased=False)
    assert mean_tr.abs().max() < 1e-5
    varying = std_tr > 0.5  # constant pixels (e.g. the corners) stay exactly 0 after centring
    assert varying.sum() >= 60
    assert torch.allclose(std_tr[varying], torch.ones_like(std_tr[varying]), atol=1e-4)
    assert (ds.x_train[:, ~varying] == 0).all()
    # the test split is transformed with the training statistics, so its own mean is not zero
    assert ds.x_test.double().mean(0).abs().max() > 0.05


def test_digits_standardisation_matches_reference_on_the_split():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    ds = load_dataset("digits", seed=5, test_frac=0.25)
    # recover which raw rows went where through the labels+pixels, then compare with the reference formula
    perm = np.random.default_rng(5).permutation(len(x))
    n_test = round(len(x) * 0.25)
    tr, te = np.sort(perm[n_test:]), np.sort(perm[:n_test])
    ref_tr, ref_te = manual_standardise(x[tr], x[te])
    np.testing.assert_allclose(ds.x_train.numpy(), ref_tr, atol=1e-5)
    np.testing.assert_allclose(ds.x_test.numpy(), ref_te, atol=1e-4)
    assert np.array_equal(ds.y_train.numpy(), y[tr]) and np.array_equal(ds.y_test.numpy(), y[te])


def test_split_is_deterministic_per_seed_and_differs_between_seeds():
    a, b, c = load_dataset("digits", seed=1), load_dataset("digits", seed=1), load_dataset("digits", seed=2)
    for t in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, t), getattr(b, t))
    assert not torch.equal(a.y_test, c.y_test) or not torch.equal(a.x_test, c.x_test)
    assert len(a.x_test) == len(c.x_test)
    # different seeds pick different test rows (compare the raw-row fingerprints via unstandardised sums)
    ra = {tuple(r) for r in a.x_test[:, :8].tolist()}
    rc = {tuple(r) for r in c.x_test[:, :8].tolist()}
    assert ra != rc


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.2"])
def test_bad_test_frac(frac):
    with pytest.raises(ConfigError, match="test_frac"):
        load_dataset("digits", test_frac=frac)


def test_test_frac_that_leaves_an_empty_split():
    with pytest.raises(ConfigError, match="at least 1"):
        load_dataset("correlated", n_samples=3, test_frac=0.1)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("digits", seed=seed)


# ----------------------------------------------------------------------------------------- correlated


@pytest.mark.parametrize("rho, d", [(0.3, 8), (0.8, 5), (-0.1, 8), (0.0, 6)])
def test_correlated_empirical_correlation_matches_rho(rho, d):
    ds = load_dataset("correlated", rho=rho, n_features=d, n_samples=40000, seed=0)
    x = torch.cat([ds.x_train, ds.x_test]).double().numpy()
    c = np.corrcoef(x, rowvar=False)
    off = c[~np.eye(d, dtype=bool)]
    assert abs(off.mean() - rho) < 0.015
    assert np.abs(off - rho).max() < 0.04
    assert ds.input_shape == (d,) and ds.n_classes == 10


def test_correlated_shapes_labels_and_determinism():
    a = load_dataset("correlated", n_features=37, n_samples=1000, seed=4)
    b = load_dataset("correlated", n_features=37, n_samples=1000, seed=4)
    c = load_dataset("correlated", n_features=37, n_samples=1000, seed=5)
    assert a.x_train.shape == (800, 37) and a.x_test.shape == (200, 37)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    counts = torch.bincount(torch.cat([a.y_train, a.y_test]), minlength=10)
    assert counts.numel() == 10 and counts.min() >= 30  # every class occurs, none dominates
    assert counts.max() <= 250
    # flatten has no effect on vector data
    unflat = load_dataset("correlated", n_features=37, n_samples=1000, seed=4, flatten=False)
    assert unflat.input_shape == (37,) and torch.equal(unflat.x_train, a.x_train)


def test_correlated_labels_are_learnable_from_inputs():
    """The teacher is a deterministic function of x: a nearest-neighbour probe beats chance by far."""
    ds = load_dataset("correlated", n_features=10, n_samples=4000, seed=0)
    dist = torch.cdist(ds.x_test, ds.x_train)
    pred = ds.y_train[dist.argmin(1)]
    assert (pred == ds.y_test).float().mean() > 0.3  # chance is 0.1


def test_correlated_large_dimension():
    ds = load_dataset("correlated", n_features=500, n_samples=200, rho=0.5)
    assert ds.x_train.shape == (160, 500)


@pytest.mark.parametrize("rho, d", [(1.0, 8), (1.2, 8), (-1 / 7, 8), (-0.2, 8), (float("nan"), 8), (-1.0, 1)])
def test_correlated_bad_rho(rho, d):
    with pytest.raises(ConfigError) as e:
        load_dataset("correlated", rho=rho, n_features=d)
    msg = str(e.value)
    assert "rho" in msg and "positive definite" in msg and f"n_features={d}" in msg


@pytest.mark.parametrize("nf", [0, -3, 2.5])
def test_correlated_bad_n_features(nf):
    with pytest.raises(ConfigError, match="n_features"):
        load_dataset("correlated", n_features=nf)


def test_correlated_single_feature():
    ds = load_dataset("correlated", n_features=1, n_samples=100, rho=0.0)
    assert ds.x_train.shape == (80, 1)


# ----------------------------------------------------------------------------------------- mnist1d


def test_mnist1d_generated_locally_and_cached(cache, no_network):
    state_py, state_np = random.getstate(), np.random.get_state()
    ds = load_dataset("mnist1d")
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.input_shape == (40,) and ds.n_classes == 10
    assert set(ds.y_train.tolist()) == set(range(10))
    assert ds.x_train.double().mean(0).abs().max() < 1e-5
    # the generator reseeds the global RNGs; load_dataset must restore them
    assert random.getstate() == state_py
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), state_np, strict=True))
    files = list(cache.glob("mnist1d-*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    again = load_dataset("mnist1d")  # served from the cache
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    # a damaged cache file is regenerated, not trusted
    files[0].write_bytes(b"garbage")
    fixed = load_dataset("mnist1d")
    assert torch.equal(fixed.x_test, ds.x_test)
    assert np.load(files[0])["x"].shape == (4000, 40)


def test_mnist1d_size_and_split_follow_arguments(cache, no_network):
    ds = load_dataset("mnist1d", n_samples=1000, test_frac=0.3)
    assert ds.x_train.shape == (700, 40) and ds.x_test.shape == (300, 40)
    assert len(list(cache.glob("mnist1d-*.npz"))) == 1


def test_mnist1d_unwritable_cache_still_returns_data(tmp_path, monkeypatch, no_network):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("ANALOGDECORR_CACHE_DIR", str(blocker / "sub"))
    ds = load_dataset("mnist1d", n_samples=200)
    assert ds.x_train.shape == (160, 40)


def test_cache_dir_locations(monkeypatch, tmp_path):
    monkeypatch.delenv("ANALOGDECORR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert D.cache_dir() == tmp_path / "analogdecorr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert D.cache_dir() == Path.home() / ".cache" / "analogdecorr"


# ----------------------------------------------------------------------------------------- IDX files


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loading_plain_and_gz(tmp_path, gz, no_network):
    raw = make_idx_set(tmp_path, gz=gz)
    ds = load_dataset("mnist", data_dir=tmp_path, flatten=False)
    assert ds.input_shape == (1, 5, 4)
    assert ds.x_train.shape == (30, 1, 5, 4) and ds.x_test.shape == (12, 1, 5, 4)
    assert ds.n_classes == 10
    assert np.array_equal(ds.y_train.numpy(), raw["train-labels-idx1-ubyte"].astype(np.int64))
    assert np.array_equal(ds.y_test.numpy(), raw["t10k-labels-idx1-ubyte"].astype(np.int64))
    ref_tr, ref_te = manual_standardise(
        raw["train-images-idx3-ubyte"].reshape(30, -1), raw["t10k-images-idx3-ubyte"].reshape(12, -1)
    )
    np.testing.assert_allclose(ds.x_train.reshape(30, -1).numpy(), ref_tr, atol=1e-5)
    np.testing.assert_allclose(ds.x_test.reshape(12, -1).numpy(), ref_te, atol=1e-5)
    flat = load_dataset("mnist", data_dir=str(tmp_path))
    assert flat.input_shape == (20,) and flat.x_train.shape == (30, 20)
    assert torch.equal(flat.x_test, ds.x_test.reshape(12, -1))


def test_idx_fixed_split_ignores_seed(tmp_path):
    make_idx_set(tmp_path, gz=False)
    a = load_dataset("mnist", data_dir=tmp_path, seed=0)
    b = load_dataset("mnist", data_dir=tmp_path, seed=9)
    assert torch.equal(a.x_train, b.x_train)


def test_fashion_mnist_in_torchvision_layout_and_dotted_names(tmp_path):
    raw = make_idx_set(tmp_path / "FashionMNIST" / "raw", gz=True, n_train=7, n_test=3, h=6, w=6)
    ds = load_dataset("fashion_mnist", data_dir=tmp_path, flatten=False)
    assert ds.x_train.shape == (7, 1, 6, 6) and ds.name == "fashion_mnist"
    assert np.array_equal(ds.y_train.numpy(), raw["train-labels-idx1-ubyte"])
    dotted = tmp_path / "dotted"
    dotted.mkdir()
    for name, arr in raw.items():
        write_idx(dotted / name.replace("-idx", ".idx"), arr, gz=False)
    ds2 = load_dataset("fashion_mnist", data_dir=dotted, flatten=False)
    assert torch.equal(ds2.x_test, ds.x_test)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_file_dataset_without_data_dir(name):
    with pytest.raises(DataError) as e:
        load_dataset(name)
    msg = str(e.value)
    assert "data_dir" in msg and "nothing is downloaded" in msg
    assert ("test_batch" in msg) if name == "cifar10" else ("train-images-idx3-ubyte" in msg)


def test_file_dataset_with_missing_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        load_dataset("mnist", data_dir=tmp_path / "nope")
    assert "t10k-labels-idx1-ubyte" in str(e.value)


def test_idx_missing_one_file_names_it(tmp_path):
    make_idx_set(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte[.gz] not found" in msg and str(tmp_path) in msg


def test_idx_wrong_magic(tmp_path):
    raw = make_idx_set(tmp_path, gz=False)
    bad = bytearray(idx_bytes(raw["train-images-idx3-ubyte"]))
    bad[3] = 1  # claims one dimension: this is a label file header on an image file
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bytes(bad))
    with pytest.raises(DataError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "magic number 0x00000801" in msg and "0x00000803" in msg


def test_idx_gzip_content_under_plain_name(tmp_path):
    raw = make_idx_set(tmp_path, gz=False)
    packed = gzip.compress(idx_bytes(raw["train-labels-idx1-ubyte"]))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(packed)
    with pytest.raises(DataError, match=r"gzip-compressed: rename it to train-labels-idx1-ubyte\.gz"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_html_page_instead_of_data(tmp_path):
    make_idx_set(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"<!DOCTYPE html><html>404</html>")
    with pytest.raises(DataError, match="HTML page"):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_data(tmp_path, gz):
    raw = make_idx_set(tmp_path, gz=False)
    cut = idx_bytes(raw["train-images-idx3-ubyte"])[:-7]
    (tmp_path / "train-images-idx3-ubyte").unlink()
    target = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    target.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(DataError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "truncated" in msg and "30x5x4" in msg and "600 bytes" in msg and "593 bytes follow" in msg


def test_idx_truncated_header_and_gzip_stream(tmp_path):
    raw = make_idx_set(tmp_path, gz=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(raw["train-images-idx3-ubyte"])[:9])
    with pytest.raises(DataError, match="truncated inside its header"):
        load_dataset("mnist", data_dir=tmp_path)
    make_idx_set(tmp_path / "g", gz=True)
    gzpath = tmp_path / "g" / "t10k-images-idx3-ubyte.gz"
    gzpath.write_bytes(gzpath.read_bytes()[:-20])  # a download cut short mid-stream
    with pytest.raises(DataError, match="damaged or incomplete"):
        load_dataset("mnist", data_dir=tmp_path / "g")


def test_idx_extra_bytes(tmp_path):
    raw = make_idx_set(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(raw["t10k-labels-idx1-ubyte"]) + b"\0\0")
    with pytest.raises(DataError, match="2 bytes beyond"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_image_label_count_mismatch(tmp_path):
    raw = make_idx_set(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", raw["train-labels-idx1-ubyte"][:29], gz=False)
    with pytest.raises(DataError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "30 images" in msg and "29 labels" in msg and "matching set" in msg


def test_idx_label_out_of_range(tmp_path):
    raw = make_idx_set(tmp_path, gz=False)
    labels = raw["t10k-labels-idx1-ubyte"].copy()
    labels[0] = 12
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, gz=False)
    with pytest.raises(DataError, match=r"labels in \[\d+, 12\]"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_train_test_image_size_mismatch(tmp_path):
    raw = make_idx_set(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", raw["t10k-images-idx3-ubyte"][:, :4, :], gz=False)
    with pytest.raises(DataError, match="5x4 but test images are 4x4"):
        load_dataset("mnist", data_dir=tmp_path)


# ----------------------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("sub", ["cifar-10-batches-py", ""])
def test_cifar_loading(tmp_path, sub, no_network):
    raw = make_cifar(tmp_path / sub if sub else tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path, flatten=False)
    assert ds.input_shape == (3, 32, 32)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (5, 3, 32, 32)
    x_tr = np.concatenate([raw[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    y_tr = np.concatenate([raw[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    assert np.array_equal(ds.y_train.numpy(), y_tr)
    assert np.array_equal(ds.y_test.numpy(), raw["test_batch"][b"labels"])
    ref_tr, ref_te = manual_standardise(x_tr, raw["test_batch"][b"data"])
    # rows are R, G, B planes of 32x32: channel 1, pixel (2, 3) is column 1024 + 2*32 + 3
    np.testing.assert_allclose(ds.x_train[:, 1, 2, 3].numpy(), ref_tr[:, 1024 + 67], atol=1e-5)
    np.testing.assert_allclose(ds.x_test.reshape(5, -1).numpy(), ref_te, atol=1e-5)
    flat = load_dataset("cifar10", data_dir=tmp_path)
    assert flat.input_shape == (3072,) and flat.x_train.shape == (20, 3072)


def test_cifar_str_keys_accepted(tmp_path):
    raw = make_cifar(tmp_path)
    b = raw["test_batch"]
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({"data": b[b"data"], "labels": b[b"labels"]}, f)
    assert load_dataset("cifar10", data_dir=tmp_path).x_test.shape == (5, 3072)


def py2_cifar_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote the official files: protocol 2, str (not unicode) strings and
    numpy.core.multiarray._reconstruct (the module numpy 2 renamed to numpy._core)."""
    n = data.shape[0]
    raw = np.ascontiguousarray(data, dtype=np.uint8).tobytes()
    out = b"\x80\x02}(U\x04data"
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
    out += b"(K\x01" + b"J" + struct.pack("<i", n) + b"M\x00\x0c\x86"
    out += b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb"
    out += b"U\x06labels]("
    out += b"".join(b"K" + bytes([v]) for v in labels)
    return out + b"eu."


def test_cifar_python2_pickle_format(tmp_path):
    make_cifar(tmp_path)
    data = np.random.default_rng(1).integers(0, 256, (3, 3072), dtype=np.uint8)
    (tmp_path / "test_batch").write_bytes(py2_cifar_pickle(data, [7, 0, 9]))
    with open(tmp_path / "test_batch", "rb") as f:  # the hand-made bytes are a valid pickle of the batch
        ref = pickle.load(f, encoding="bytes")
    assert np.array_equal(ref[b"data"], data) and ref[b"labels"] == [7, 0, 9]
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_test.shape == (3, 3072) and ds.y_test.tolist() == [7, 0, 9]


def test_cifar_corrupt_pickle(tmp_path):
    make_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x02}q\x00(garbage")
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_dir=tmp_path)
    msg = str(e.value)
    assert "data_batch_3" in msg and "could not be unpickled" in msg and "cifar-10-python.tar.gz" in msg


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/nonexistent-dir-analogdecorr/pwned"),))


def test_cifar_pickle_cannot_run_code(tmp_path):
    make_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, f)
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize(
    "payload, match",
    [
        ([1, 2, 3], "holds a list"),
        ({b"labels": [0]}, "no 'data'/'labels'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(2, 100\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels in \[0, 10\]"),
    ],
)
def test_cifar_malformed_batch(tmp_path, payload, match):
    make_cifar(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(DataError, match=match):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_missing_batches_and_tarball_hint(tmp_path):
    make_cifar(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataError, match="data_batch_5 not found"):
        load_dataset("cifar10", data_dir=tmp_path)
    empty = tmp_path / "e"
    empty.mkdir()
    (empty / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="tar xzf cifar-10-python.tar.gz"):
        load_dataset("cifar10", data_dir=empty)


# ----------------------------------------------------------------------------------------- batches


def test_batches_cover_all_samples_with_partial_last_batch():
    x = torch.arange(23, dtype=torch.float32).unsqueeze(1).repeat(1, 3)
    y = torch.arange(23)
    got = list(batches(x, y, 5, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b[0]) for b in got] == [5, 5, 5, 5, 3]
    assert all(torch.equal(bx[:, 0].long(), by) for bx, by in got)  # rows stay paired with labels
    ys = torch.cat([b[1] for b in got])
    assert sorted(ys.tolist()) == list(range(23)) and ys.tolist() != list(range(23))


def test_batches_deterministic_by_generator():
    x, y = torch.randn(50, 2), torch.arange(50)

    def order(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.cat([b for _, b in batches(x, y, 8, shuffle=True, generator=g)])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    g = torch.Generator().manual_seed(1)
    first = torch.cat([b for _, b in batches(x, y, 8, shuffle=True, generator=g)])
    second = torch.cat([b for _, b in batches(x, y, 8, shuffle=True, generator=g)])
    assert not torch.equal(first, second)  # the generator advances: each epoch gets a new order


def test_batches_unshuffled_in_order():
    x, y = torch.randn(10, 4), torch.arange(10)
    got = list(batches(x, y, 4, shuffle=False, generator=None))
    assert [b[1].tolist() for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert torch.equal(got[2][0], x[8:])


def test_batches_errors():
    x, y = torch.randn(10, 4), torch.arange(10)
    with pytest.raises(ConfigError, match="batch_size"):
        list(batches(x, y, 0, shuffle=False, generator=None))
    with pytest.raises(DataError, match="10 samples but y has 9"):
        list(batches(x, y[:9], 2, shuffle=False, generator=None))
    with pytest.raises(ConfigError, match="Generator"):
        list(batches(x, y, 2, shuffle=True, generator=None))


# ----------------------------------------------------------------------------------------- check_batch


def test_check_batch_accepts_good_batches():
    check_batch(torch.randn(4, 64), 64)
    check_batch(torch.randn(4, 1, 8, 8), 64)  # images: C*H*W features
    check_batch(torch.zeros(3, 5, dtype=torch.int64), 5)


def test_check_batch_feature_mismatch_names_both_counts():
    with pytest.raises(DataError) as e:
        check_batch(torch.randn(4, 40), 64)
    msg = str(e.value)
    assert "40 features" in msg and "expects 64" in msg


def test_check_batch_needs_a_batch_dimension():
    with pytest.raises(DataError, match="add a batch dimension"):
        check_batch(torch.randn(64), 64)


def test_check_batch_nan_and_inf_counted_and_located():
    x = torch.randn(6, 5)
    x[2, 3] = float("nan")
    x[2, 4] = float("nan")
    x[4, 0] = float("inf")
    with pytest.raises(DataError) as e:
        check_batch(x, 5)
    msg = str(e.value)
    assert "2 NaN and 1 Inf" in msg and "2 of 6 samples" in msg and "rows 2, 4" in msg
    assert "first at row 2, feature 3" in msg


# --------------------------------------------------------------------------------------- validation split


@pytest.mark.parametrize("name", ["digits", "correlated", "mnist1d"])
def test_validation_split_is_a_seeded_part_of_the_training_set(name):
    whole = load_dataset(name, seed=3, n_samples=600, val_frac=0.0)
    ds = load_dataset(name, seed=3, n_samples=600, val_frac=0.2)
    n = len(whole.x_train)
    assert len(ds.x_val) == round(0.2 * n) and len(ds.x_train) + len(ds.x_val) == n
    assert len(ds.x_test) == len(whole.x_test) and torch.equal(ds.y_test, whole.y_test)  # test set unchanged
    # same seed -> same split; another seed -> another validation set
    again = load_dataset(name, seed=3, n_samples=600, val_frac=0.2)
    assert torch.equal(again.x_val, ds.x_val) and torch.equal(again.y_train, ds.y_train)
    other = load_dataset(name, seed=4, n_samples=600, val_frac=0.2)
    if name == "mnist1d":  # mnist1d's train/test are fixed: only the validation rows move with the seed
        assert not torch.equal(other.y_val, ds.y_val) or not torch.equal(other.x_val, ds.x_val)


def test_validation_rows_are_disjoint_training_rows_standardised_with_the_rest_only():
    x, y = D._digits_arrays()
    ds = load_dataset("digits", seed=1, val_frac=0.25)
    perm0 = np.random.default_rng(1).permutation(len(x))  # the train/test split (test_frac 0.2)
    tr_idx = np.sort(perm0[round(len(x) * 0.2):])
    x_tr, y_tr = x[tr_idx], y[tr_idx]
    perm = np.random.default_rng([1, D._VAL_STREAM]).permutation(len(x_tr))
    n_val = round(0.25 * len(x_tr))
    keep, val = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    assert not set(keep) & set(val)
    ref_tr, ref_va = manual_standardise(x_tr[keep], x_tr[val])
    np.testing.assert_allclose(ds.x_train.numpy(), ref_tr, atol=1e-5)
    np.testing.assert_allclose(ds.x_val.numpy(), ref_va, atol=1e-5)
    np.testing.assert_array_equal(ds.y_val.numpy(), y_tr[val])
    # the statistics are the remaining training rows': their mean is 0, the validation rows' is not exactly 0
    assert abs(float(ds.x_train.mean(0).abs().max())) < 1e-5
    assert float(ds.x_val.mean(0).abs().max()) > 1e-3


def test_val_frac_zero_gives_the_previous_split_and_an_empty_validation_set():
    ds = _load_dataset("digits", seed=2, val_frac=0.0)
    ref = load_dataset("digits", seed=2)
    assert torch.equal(ds.x_train, ref.x_train) and ds.x_val.shape == (0, 64) and ds.y_val.shape == (0,)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), True, "0.1"])
def test_bad_val_frac_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="val_frac"):
        _load_dataset("digits", val_frac=bad)


def test_val_frac_that_leaves_no_validation_row_names_the_range():
    with pytest.raises(ConfigError, match="val_frac=0.0001 .* leaves 0 validation"):
        _load_dataset("correlated", n_samples=50, val_frac=1e-4)


def test_default_loader_holds_out_a_tenth_for_validation():
    ds = _load_dataset("digits")
    n = len(ds.x_train) + len(ds.x_val)
    assert len(ds.x_val) == round(0.1 * n) and D.VAL_FRAC == 0.1


def test_input_scale_global_and_max_use_the_training_rows_only():
    """global: one mean and std over every training value; max: x / the largest training value (the paper code's
    two scalings); the same transform on validation and test; feature (the default) is the per-feature one."""
    ref = load_dataset("digits", seed=1)
    glob = load_dataset("digits", seed=1, input_scale="global")
    top = load_dataset("digits", seed=1, input_scale="max")
    assert torch.equal(load_dataset("digits", seed=1, input_scale="feature").x_train, ref.x_train)
    assert abs(float(glob.x_train.double().mean())) < 1e-6 and abs(float(glob.x_train.double().std()) - 1) < 1e-3
    assert float(glob.x_train.double().mean(0).abs().max()) > 0.5  # one mean for all pixels: not per feature
    # global and max are affine in the raw pixels with one slope: the same ordering, the test set transformed alike
    assert float(top.x_train.max()) == 1.0 and float(top.x_train.min()) == 0.0
    assert torch.allclose(top.x_test * 16, torch.round(top.x_test * 16), atol=1e-5)
    slope = float(glob.x_train.double().std() / top.x_train.double().std())
    assert torch.allclose(glob.x_test.double(), (top.x_test.double() - top.x_train.double().mean()) * slope,
                          atol=1e-4)
    assert torch.allclose(glob.x_val.double(), (top.x_val.double() - top.x_train.double().mean()) * slope, atol=1e-4)
    with pytest.raises(ConfigError, match=r"unknown input_scale 'maxx' \(did you mean 'max'\?\)"):
        load_dataset("digits", input_scale="maxx")


def test_input_scale_max_refuses_inputs_that_are_not_positive():
    with pytest.raises(ConfigError, match=r'input_scale = "max" needs a positive largest training value'):
        D._scale("max", -np.ones((4, 3)), np.zeros((2, 3)))
