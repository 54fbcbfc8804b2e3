"""Datasets: loading, deterministic splits, train-only standardisation, minibatches and batch checks.

Every loader returns a :class:`Dataset` of float32 features and int64 labels: a training part, a seeded
validation part carved out of the training set (``val_frac``; selection of epochs and settings uses it, never
the test set) and the test set, all scaled with statistics of the remaining training part only (so neither
validation nor test statistics leak into training): per feature by default (``input_scale = "feature"``), or, as
the paper's code does, with one mean and std over every value (``"global"``) or divided by the largest value
(``"max"``). Nothing here
touches the network: ``digits`` ships with scikit-learn, ``mnist1d`` is generated locally (and cached),
``correlated`` is synthetic, and the file datasets (``mnist``, ``fashion_mnist``, ``cifar10``) are read
from a user-given ``data_dir``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import numbers
import os
import pickle
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .atomic import atomic_write
from .choices import check_choice
from .errors import ConfigError, DataError

DATASETS = ("digits", "mnist1d", "correlated", "mnist", "fashion_mnist", "cifar10")
FILE_DATASETS = ("mnist", "fashion_mnist", "cifar10")

#: Classes of the synthetic ``correlated`` task (argmax over the teacher's outputs).
CORRELATED_CLASSES = 10
#: Hidden width of the fixed random teacher MLP that labels the ``correlated`` inputs.
TEACHER_HIDDEN = 100
#: The teacher's weights depend only on (this seed, n_features): changing `seed` or `rho` resamples the inputs
#: and the split, never the function being learned.
TEACHER_SEED = 0x0DEC0
#: Features whose training std is at or below this are constant; they are centred but not scaled.
STD_EPS = 1e-8
#: Default fraction of the training set held out for validation.
VAL_FRAC = 0.1
#: How inputs are scaled (training-part statistics only): ``feature``: (x − mean)/std per feature (the default);
#: ``global``: one mean and std over every training value (the paper code's per-channel standardisation, for
#: one-channel data); ``max``: x / max(x_train) (its in-memory loaders; digits then lies in [0, 1]).
INPUT_SCALES = ("feature", "global", "max")
#: Mixed into the seed of the validation split so it is not the same permutation as the digits test split.
_VAL_STREAM = 0x7A1
#: Rows per chunk when standardising (keeps float64 temporaries small for CIFAR-sized arrays).
_CHUNK = 4096


@dataclass
class Dataset:
    """A standardised train/validation/test split. x: float32 (N, *input_shape); y: int64 (N,) in
    [0, n_classes). ``x_val``/``y_val`` hold 0 rows when the validation split is disabled (val_frac = 0)."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    input_shape: tuple[int, ...]  # (d,) for vectors, (C, H, W) for images
    x_val: Tensor | None = None
    y_val: Tensor | None = None

    def __post_init__(self) -> None:
        if self.x_val is None:
            self.x_val = self.x_train[:0]
            self.y_val = self.y_train[:0]

    @property
    def n_features(self) -> int:
        """Number of scalar inputs per sample (product of input_shape)."""
        return math.prod(self.input_shape)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.x_train.shape)}, "
            f"val={tuple(self.x_val.shape)}, test={tuple(self.x_test.shape)}, n_classes={self.n_classes}, "
            f"input_shape={self.input_shape})"
        )


# --------------------------------------------------------------------------------------------- public API


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    data_dir: str | Path | None = None,
    test_frac: float = 0.2,
    rho: float = 0.3,
    n_features: int = 64,
    n_samples: int = 5000,
    flatten: bool = True,
    val_frac: float = VAL_FRAC,
    input_scale: str = "feature",
) -> Dataset:
    """Load dataset `name`, split it and standardise it with training-split statistics.

    `val_frac` of the training rows (a permutation seeded by `seed`, for every dataset) become the validation
    set; the standardisation statistics come from the remaining training rows only. `val_frac = 0` keeps the
    whole training set (exactly the rows and order of earlier versions) and an empty validation set.

    `seed` fixes the train/test split of datasets without an official split (digits, correlated) and
    the correlated inputs; mnist1d uses its canonical generator seed and split point (train fraction
    1 − test_frac, `n_samples` total; the defaults give the published 4000/1000 dataset); mnist,
    fashion_mnist and cifar10 use their fixed official splits (seed and test_frac do not apply). `rho` and
    `n_features` apply to correlated only. `flatten=False` returns images as (N, C, H, W) for
    digits/mnist/fashion_mnist/cifar10; vector datasets are always (N, d). `input_scale`: one of INPUT_SCALES.
    """
    check_choice(name, DATASETS, "dataset")
    check_choice(input_scale, INPUT_SCALES, "input_scale")
    seed = _check_int("seed", seed, minimum=0)
    val_frac = check_val_frac(val_frac)
    if name in ("digits", "correlated", "mnist1d"):
        test_frac = _check_test_frac(test_frac)

    if name == "digits":
        x, y = _digits_arrays()
        x_tr, y_tr, x_te, y_te = _split(x, y, test_frac, seed, name)
        image_shape: tuple[int, ...] = (1, 8, 8)
        n_classes = 10
    elif name == "mnist1d":
        n_samples = _check_int("n_samples", n_samples, minimum=10)
        x_tr, y_tr, x_te, y_te = _mnist1d_arrays(n_samples, test_frac)
        image_shape = (x_tr.shape[1],)
        n_classes = 10
    elif name == "correlated":
        n_features = _check_int("n_features", n_features, minimum=1)
        n_samples = _check_int("n_samples", n_samples, minimum=2)
        rho = _check_rho(rho, n_features)
        x, y = _correlated_arrays(n_samples, n_features, rho, seed)
        n_test = _n_test(n_samples, test_frac, name)
        # samples are i.i.d., so the last n_test rows are as random a test set as any permutation
        x_tr, y_tr, x_te, y_te = x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]
        image_shape = (n_features,)
        n_classes = CORRELATED_CLASSES
    else:
        root = _check_data_dir(name, data_dir)
        if name == "cifar10":
            x_tr, y_tr, x_te, y_te = _cifar_arrays(root)
            image_shape = (3, 32, 32)
        else:
            x_tr, y_tr, x_te, y_te = _idx_dataset_arrays(name, root)
            image_shape = (1, *x_tr.shape[1:])
        n_classes = 10
        x_tr = x_tr.reshape(len(x_tr), -1)
        x_te = x_te.reshape(len(x_te), -1)

    x_tr, y_tr, x_va, y_va = _split_validation(x_tr, y_tr, val_frac, seed, name)
    xs_tr, xs_va, xs_te = _scale(input_scale, x_tr, x_va, x_te)
    shape = image_shape if (not flatten and len(image_shape) == 3) else (math.prod(image_shape),)

    def tensors(xs: np.ndarray, ys: np.ndarray) -> tuple[Tensor, Tensor]:
        return (torch.from_numpy(xs.reshape(len(xs), *shape)),
                torch.from_numpy(np.ascontiguousarray(ys, dtype=np.int64)))

    (xt, yt), (xv, yv), (xe, ye) = tensors(xs_tr, y_tr), tensors(xs_va, y_va), tensors(xs_te, y_te)
    return Dataset(name=name, x_train=xt, y_train=yt, x_test=xe, y_test=ye, n_classes=n_classes,
                   input_shape=tuple(int(s) for s in shape), x_val=xv, y_val=yv)


def batches(
    x: Tensor, y: Tensor, batch_size: int, *, shuffle: bool, generator: torch.Generator | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (x, y) minibatches, shuffled by `generator` if asked (reproducible); last partial batch kept."""
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    n = x.shape[0]
    if y.shape[0] != n:
        raise DataError(f"x has {n} samples but y has {y.shape[0]}; pass matching inputs and labels")
    if shuffle:
        if generator is None:
            raise ConfigError("batches(shuffle=True) needs a torch.Generator so the order is reproducible")
        order = torch.randperm(n, generator=generator, device=generator.device)
        order = order.to(x.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx.to(y.device)]
    else:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]


def check_batch(x: Tensor, n_features: int) -> None:
    """Raise DataError if a batch does not have `n_features` values per sample or contains NaN/Inf."""
    if x.ndim < 2:
        raise DataError(
            f"batch has shape {tuple(x.shape)}, expected (batch, {n_features}) with rows as samples; "
            "add a batch dimension (x.unsqueeze(0) for one sample)"
        )
    got = math.prod(x.shape[1:])
    if got != n_features:
        raise DataError(
            f"batch has {got} features per sample (shape {tuple(x.shape)}) but the model expects "
            f"{n_features}; "
            "use the dataset the model was built for, or rebuild the model for this input size"
        )
    if not torch.is_floating_point(x):
        return  # integer tensors cannot hold NaN/Inf
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(bad.sum()) - n_nan
        flat = bad.reshape(x.shape[0], -1)
        rows = torch.nonzero(flat.any(dim=1)).flatten().tolist()
        first_row = rows[0]
        first_feat = int(torch.nonzero(flat[first_row]).flatten()[0])
        shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
        raise DataError(
            f"batch contains {n_nan} NaN and {n_inf} Inf values in {len(rows)} of {x.shape[0]} samples "
            f"(rows {shown}; first at row {first_row}, feature {first_feat}); check the data files and any "
            "preprocessing, or an upstream layer that diverged"
        )


# --------------------------------------------------------------------------------------------- validation


def _check_int(what: str, value: object, *, minimum: int) -> int:
    """`value` as an int >= minimum, else ConfigError naming the parameter."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value != int(value) or int(value) < minimum:
        raise ConfigError(f"{what}={value!r} must be an integer >= {minimum}")
    return int(value)


def check_val_frac(val_frac: object) -> float:
    """`val_frac` as a float in [0, 1), else ConfigError (0 disables the validation split)."""
    ok = isinstance(val_frac, numbers.Real) and not isinstance(val_frac, bool) and math.isfinite(val_frac)
    if not ok or not 0.0 <= float(val_frac) < 1.0:
        raise ConfigError(
            f"val_frac={val_frac!r} must be a fraction in [0, 1) of the training set held out for validation; "
            "set e.g. val_frac = 0.1 (0 disables the validation split)"
        )
    return float(val_frac)


def _check_test_frac(test_frac: float) -> float:
    if not isinstance(test_frac, numbers.Real) or not (0.0 < float(test_frac) < 1.0):
        raise ConfigError(f"test_frac={test_frac!r} must be a fraction strictly between 0 and 1 (e.g. 0.2)")
    return float(test_frac)


def _n_test(n: int, test_frac: float, name: str) -> int:
    n_test = int(round(n * test_frac))
    if n_test < 1 or n_test > n - 1:
        raise ConfigError(
            f"test_frac={test_frac} of {n} samples leaves {n_test} test and {n - n_test} training samples "
            f"for dataset {name!r}; both must be at least 1: use more samples or a test_frac nearer 0.5"
        )
    return n_test


def _check_rho(rho: float, d: int) -> float:
    lo = -1.0 / (d - 1) if d > 1 else -1.0
    if not isinstance(rho, numbers.Real) or isinstance(rho, bool) or not (lo < float(rho) < 1.0):
        raise ConfigError(
            f"rho={rho!r} is outside ({lo:.4g}, 1) for n_features={d}: the correlation matrix "
            "(1-rho)I + rho*11^T is positive definite only there; choose rho in that open interval"
        )
    return float(rho)


def _check_data_dir(name: str, data_dir: str | Path | None) -> Path:
    expected = _expected_files(name)
    if data_dir is None:
        raise DataError(
            f"dataset {name!r} is read from local files but no data_dir was given; set data_dir to a "
            f"directory holding {expected} (nothing is downloaded)"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data_dir {str(root)!r} for dataset {name!r} does not exist or is not a directory; "
            f"point data_dir at a directory holding {expected}"
        )
    return root


def _expected_files(name: str) -> str:
    if name == "cifar10":
        return (
            "data_batch_1..data_batch_5 and test_batch (the python version: cifar-10-python.tar.gz "
            "extracted, either in data_dir or in data_dir/cifar-10-batches-py)"
        )
    return ", ".join(_IDX_FILES) + " (each plain or .gz)"


# ---------------------------------------------------------------------------------- standardise / split


def _split_validation(
    x: np.ndarray, y: np.ndarray, val_frac: float, seed: int, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation) rows of a training set: a seeded random ``val_frac`` of them for validation (both
    parts keep the original row order). ``val_frac = 0`` returns the training set unchanged."""
    n = len(x)
    if val_frac == 0.0:
        return x, y, x[:0], y[:0]
    n_val = int(round(n * val_frac))
    if n_val < 1 or n_val > n - 1:
        raise ConfigError(
            f"val_frac={val_frac} of the {n} training samples of dataset {name!r} leaves {n_val} validation and "
            f"{n - n_val} training samples; both must be at least 1: choose val_frac between "
            f"{1 / n:.3g} and {1 - 1 / n:.3g}, or 0 to disable validation"
        )
    perm = np.random.default_rng([seed, _VAL_STREAM]).permutation(n)
    tr, va = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    return x[tr], y[tr], x[va], y[va]


def _scale(how: str, x_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """``x_train`` and ``others`` (validation, test) scaled as INPUT_SCALES says, as float32, with statistics of
    ``x_train`` only."""
    if how == "feature":
        return _standardise(x_train, *others)
    if how == "max":
        top = float(np.max(x_train))
        if not top > 0:
            raise ConfigError(f"input_scale = \"max\" needs a positive largest training value (got {top:g}); use "
                              "input_scale = \"feature\" or \"global\" for inputs that are not positive")
        return tuple(np.asarray(x, dtype=np.float32) / top for x in (x_train, *others))
    n = x_train.size
    mean = sum(float(x_train[s : s + _CHUNK].sum(dtype=np.float64)) for s in range(0, len(x_train), _CHUNK)) / n
    sq = sum(float(np.square(x_train[s : s + _CHUNK].astype(np.float64) - mean).sum())
             for s in range(0, len(x_train), _CHUNK))
    std = math.sqrt(sq / n)
    std = std if std > STD_EPS else 1.0
    return tuple(_affine(x, mean, std) for x in (x_train, *others))


def _affine(x: np.ndarray, mean: float | np.ndarray, std: float | np.ndarray) -> np.ndarray:
    """(x − mean) / std in float64 row chunks, as float32 (no full float64 copy of a large uint8 array)."""
    out = np.empty(x.shape, dtype=np.float32)
    for s in range(0, len(x), _CHUNK):
        out[s : s + _CHUNK] = (x[s : s + _CHUNK].astype(np.float64) - mean) / std
    return out


def _standardise(x_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x − mean)/std per feature with statistics of the training rows only, as float32 (2-D inputs); the
    same transform is applied to every array in ``others`` (validation, test).

    Two-pass float64 statistics in row chunks, so large uint8 arrays (CIFAR) never get a full float64 copy.
    Features that are constant on the training split (std <= STD_EPS) are centred but not scaled.
    """
    n, d = x_train.shape
    total = np.zeros(d, dtype=np.float64)
    for s in range(0, n, _CHUNK):
        total += x_train[s : s + _CHUNK].sum(axis=0, dtype=np.float64)
    mean = total / n
    sq = np.zeros(d, dtype=np.float64)
    for s in range(0, n, _CHUNK):
        sq += np.square(x_train[s : s + _CHUNK].astype(np.float64) - mean).sum(axis=0)
    std = np.sqrt(sq / n)
    std = np.where(std > STD_EPS, std, 1.0)
    return tuple(_affine(x, mean, std) for x in (x_train, *others))


def _split(
    x: np.ndarray, y: np.ndarray, test_frac: float, seed: int, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random train/test split, a pure function of (len(x), test_frac, seed)."""
    n = len(x)
    n_test = _n_test(n, test_frac, name)
    perm = np.random.default_rng(seed).permutation(n)
    tr, te = np.sort(perm[n_test:]), np.sort(perm[:n_test])
    return x[tr], y[tr], x[te], y[te]


# ---------------------------------------------------------------------------------- digits, correlated


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    x, y = load_digits(return_X_y=True)
    return x.astype(np.float64), y.astype(np.int64)


def _correlated_arrays(n: int, d: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n Gaussian samples with unit variances and all pairwise correlations rho, labelled by a fixed teacher.

    Σ = (1−rho)(I − P) + (1+(d−1)rho) P with P = 11ᵀ/d, so x = a(I−P)ε + bPε with a² = 1−rho, b² = 1+(d−1)rho:
    O(n d) work and valid for negative rho too. Labels: argmax of a random tanh MLP (seeded by
    TEACHER_SEED and d only) whose outputs are standardised per class over the sample so all classes occur.
    """
    eps = np.random.default_rng([seed, d, 1]).standard_normal((n, d))
    m = eps.mean(axis=1, keepdims=True)
    x = math.sqrt(1.0 - rho) * (eps - m) + math.sqrt(1.0 + (d - 1) * rho) * m
    t = np.random.default_rng([TEACHER_SEED, d])
    w1 = t.standard_normal((d, TEACHER_HIDDEN)) / math.sqrt(d)
    b1 = 0.1 * t.standard_normal(TEACHER_HIDDEN)
    w2 = t.standard_normal((TEACHER_HIDDEN, CORRELATED_CLASSES)) / math.sqrt(TEACHER_HIDDEN)
    logits = np.tanh(x @ w1 + b1) @ w2
    logits = (logits - logits.mean(axis=0)) / (logits.std(axis=0) + 1e-12)
    return x, logits.argmax(axis=1).astype(np.int64)


# --------------------------------------------------------------------------------------------- mnist1d


def cache_dir() -> Path:
    """Where generated data is cached: $ANALOGDECORR_CACHE_DIR, else $XDG_CACHE_HOME/analogdecorr, else
    ~/.cache/analogdecorr."""
    env = os.environ.get("ANALOGDECORR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "analogdecorr"


_Arrays4 = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _mnist1d_arrays(n_samples: int, test_frac: float) -> _Arrays4:
    """MNIST-1D generated locally with mnist1d.data.make_dataset (never get_dataset, which may download).

    The generator's own seed (42) and train/test order are kept, so with the defaults this is the published
    4000/1000 dataset. The result is cached as .npz keyed by the generator arguments and mnist1d version.
    """
    try:
        from importlib.metadata import version

        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # pragma: no cover - mnist1d is a hard dependency
        raise DataError(f"dataset 'mnist1d' needs the mnist1d package ({exc}); pip install mnist1d") from exc

    args = get_dataset_args(as_dict=True)
    args["num_samples"] = n_samples
    args["train_split"] = 1.0 - test_frac
    args.pop("url", None)  # only used for downloading, which we never do
    try:
        ver = version("mnist1d")
    except Exception:  # pragma: no cover
        ver = "unknown"
    key = hashlib.sha256(json.dumps({"args": args, "mnist1d": ver}, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{key}.npz"
    names = ("x", "y", "x_test", "y_test")

    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = tuple(np.asarray(f[k]) for k in names)
            if len(arrays[0]) == len(arrays[1]) and len(arrays[2]) == len(arrays[3]):
                return arrays  # type: ignore[return-value]
        except Exception:
            pass  # unreadable or partial cache: regenerate below and overwrite it

    # make_dataset reseeds Python's and numpy's global RNGs; restore them so loading data never changes the
    # random stream of the caller.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        from mnist1d.utils import ObjectView

        data = make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    arrays = tuple(np.asarray(data[k]) for k in names)
    n_test = len(arrays[2])
    if n_test < 1 or len(arrays[0]) < 1:
        raise ConfigError(
            f"mnist1d with n_samples={n_samples} and test_frac={test_frac} gives {len(arrays[0])} "
            f"training and {n_test} test samples; both must be at least 1: use more samples or a "
            "test_frac nearer 0.5"
        )
    _atomic_savez(path, dict(zip(names, arrays, strict=True)))
    return arrays  # type: ignore[return-value]


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically (analogdecorr.atomic); a failure only skips caching."""
    try:
        with atomic_write(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError:
        pass  # read-only or full cache dir: the data is still returned, just regenerated next time


# ---------------------------------------------------------------------------------- IDX (mnist, fashion)

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_SUBDIRS = {
    "mnist": ("", "MNIST/raw", "mnist", "MNIST"),
    "fashion_mnist": ("", "FashionMNIST/raw", "fashion_mnist", "fashion-mnist", "FashionMNIST"),
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _idx_dataset_arrays(name: str, root: Path) -> _Arrays4:
    """Read the four IDX files of mnist / fashion_mnist from root (or a known sub-directory of it)."""
    found: dict[str, Path] = {}
    for sub in _IDX_SUBDIRS[name]:
        d = root / sub if sub else root
        found = {}
        for base in _IDX_FILES:
            alt = base.replace("-idx", ".idx")  # some mirrors name them train-images.idx3-ubyte
            for cand in (base, base + ".gz", alt, alt + ".gz"):
                if (d / cand).is_file():
                    found[base] = d / cand
                    break
        if len(found) == len(_IDX_FILES):
            break
        if found:  # a partial set in this directory: report what is missing here
            break
    missing = [b for b in _IDX_FILES if b not in found]
    if missing:
        where = str(next(iter(found.values())).parent) if found else str(root)
        raise DataError(
            f"dataset {name!r}: {', '.join(m + '[.gz]' for m in missing)} not found in {where!r}; "
            f"data_dir must hold all of {', '.join(_IDX_FILES)} (plain or .gz)"
        )
    x_tr = _read_idx(found["train-images-idx3-ubyte"], ndim=3)
    y_tr = _read_idx(found["train-labels-idx1-ubyte"], ndim=1)
    x_te = _read_idx(found["t10k-images-idx3-ubyte"], ndim=3)
    y_te = _read_idx(found["t10k-labels-idx1-ubyte"], ndim=1)
    for xs, ys, px, py in (
        (x_tr, y_tr, found["train-images-idx3-ubyte"], found["train-labels-idx1-ubyte"]),
        (x_te, y_te, found["t10k-images-idx3-ubyte"], found["t10k-labels-idx1-ubyte"]),
    ):
        if len(xs) != len(ys):
            raise DataError(
                f"{px.name} holds {len(xs)} images but {py.name} holds {len(ys)} labels; the files belong to "
                "different datasets or one is damaged: replace them with a matching set"
            )
        _check_labels(ys, py)
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(
            f"training images are {x_tr.shape[1]}x{x_tr.shape[2]} but test images are "
            f"{x_te.shape[1]}x{x_te.shape[2]}; the files come from different datasets: use a matching set"
        )
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


def _check_labels(y: np.ndarray, path: Path, n_classes: int = 10) -> None:
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise DataError(
            f"{path} has labels in [{int(y.min())}, {int(y.max())}] but this dataset has classes "
            f"0..{n_classes - 1}; "
            "the file is damaged or not a label file: replace it"
        )


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot read {path} ({exc}); the file is damaged or incomplete: download it again"
        ) from exc


def _read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Parse an IDX file (magic 00 00 TT DD, DD big-endian uint32 sizes, then data), checking every size."""
    raw = _read_bytes(path)
    kind = "images" if ndim == 3 else "labels"
    expect_magic = 0x0800 | ndim
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] != ndim:
        got = "0x" + raw[:4].hex() if len(raw) >= 4 else f"only {len(raw)} bytes"
        hint = ""
        if raw[:2] == b"\x1f\x8b":
            hint = f" (the file is gzip-compressed: rename it to {path.name}.gz)"
        elif raw.lstrip()[:1] == b"<":
            hint = " (it looks like an HTML page: the download failed)"
        raise DataError(
            f"{path} is not an IDX {kind} file: magic number {got}, expected 0x{expect_magic:08x}{hint}; "
            "replace it with the original file"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header ({len(raw)} bytes); download it again")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    need = math.prod(dims) * dtype.itemsize
    have = len(raw) - header
    if have < need:
        raise DataError(
            f"{path} is truncated: its header says {'x'.join(map(str, dims))} values ({need} bytes of "
            f"data) but only {have} bytes follow; download the file again"
        )
    if have > need:
        raise DataError(
            f"{path} has {have - need} bytes beyond the {'x'.join(map(str, dims))} values its header "
            "declares; the file is damaged: download it again"
        )
    return np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=header).reshape(dims)


# --------------------------------------------------------------------------------------------- CIFAR-10

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else: a CIFAR batch cannot run arbitrary code."""

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes objects at pickle protocol 2
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - signature fixed by pickle
        mod = module.replace("numpy.core.", "numpy._core.", 1) if module.startswith("numpy.core.") else module
        if (mod, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        import importlib

        return getattr(importlib.import_module(mod), name)


def _cifar_arrays(root: Path) -> _Arrays4:
    """Read CIFAR-10 python batches from root/cifar-10-batches-py or root itself."""
    files = (*_CIFAR_TRAIN, _CIFAR_TEST)
    base = None
    for d in (root / "cifar-10-batches-py", root):
        if all((d / f).is_file() for f in files):
            base = d
            break
    if base is None:
        d = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
        missing = [f for f in files if not (d / f).is_file()]
        hint = ""
        if (root / "cifar-10-python.tar.gz").is_file():
            hint = (
                " (found cifar-10-python.tar.gz: extract it with "
                f"`tar xzf cifar-10-python.tar.gz -C {root}`)"
            )
        raise DataError(
            f"dataset 'cifar10': {', '.join(missing)} not found in {str(d)!r}{hint}; data_dir must hold "
            f"{_expected_files('cifar10')}"
        )
    parts = [_read_cifar_batch(base / f) for f in _CIFAR_TRAIN]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = _read_cifar_batch(base / _CIFAR_TEST)
    return x_tr, y_tr, x_te, y_te


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch: dict with b'data' (N×3072 uint8: R, G, B planes of 32×32) and b'labels' (N ints)."""
    fix = "the file is damaged or not a CIFAR-10 python batch: extract cifar-10-python.tar.gz again"
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(io.BufferedReader(f), encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc})") from exc
    except Exception as exc:  # any unpickling failure means the file is not what we expect
        raise DataError(f"{path} could not be unpickled ({type(exc).__name__}: {exc}); {fix}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a dict with data and labels; {fix}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise DataError(f"{path} has no 'data'/'labels' entries (keys: {sorted(map(str, obj))}); {fix}")
    try:
        data = np.asarray(data)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path} has malformed data or labels ({exc}); {fix}") from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DataError(
            f"{path} has data of shape {data.shape} and dtype {data.dtype}, expected (N, 3072) uint8; {fix}"
        )
    if len(data) != len(labels):
        raise DataError(f"{path} holds {len(data)} images but {len(labels)} labels; {fix}")
    _check_labels(labels, path)
    return data.reshape(-1, 3, 32, 32), labels
