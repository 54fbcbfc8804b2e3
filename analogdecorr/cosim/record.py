"""Stream recording: the first K samples each layer's unit saw in training, for ``cosim check`` to replay.

One file per decorrelated layer, ``RUN/cosim/layer{i}.npz``, written atomically at the end of every epoch until
K samples are in (and again on completion): x ints (n, d), learn bits (n,), z ints (n, d), the unit's state
before the first sample (R0, mu0, lfsr0), the format (JSON) and the layer's scale. On resume the file is read
back and cut to the samples the checkpoint's state has seen, so the stream continues without a gap or a repeat.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..errors import DataError
from ..fixed.format import UnitFormat

FOLDER = "cosim"


def recording_path(run_dir: str | Path, layer: int) -> Path:
    return Path(run_dir) / FOLDER / f"layer{layer}.npz"


@dataclass
class Recording:
    """A recorded stream: what the unit of ``layer`` saw, in order."""

    layer: int
    fmt: UnitFormat
    scale: float
    x: np.ndarray  # (n, d) int64
    learn: np.ndarray  # (n,) bool
    z: np.ndarray  # (n, d) int64
    R0: np.ndarray
    mu0: np.ndarray
    lfsr0: int
    limit: int

    @property
    def samples(self) -> int:
        return int(self.x.shape[0])


class StreamRecorder:
    """Collects the first ``limit`` samples of one layer's stream (``add`` per batch)."""

    def __init__(self, layer: int, fmt: UnitFormat, limit: int) -> None:
        self.layer, self.fmt, self.limit = layer, fmt, int(limit)
        self._x: list[np.ndarray] = []
        self._learn: list[np.ndarray] = []
        self._z: list[np.ndarray] = []
        self.n = 0
        self.start: Any = None  # the unit state before sample 0
        self.scale = 0.0
        self.saved_n = -1
        self.dtype = np.int16 if fmt.width <= 16 else np.int32  # the smallest word that holds W bits

    @property
    def complete(self) -> bool:
        return self.n >= self.limit

    def add(self, x: np.ndarray, learn: np.ndarray, z: np.ndarray, state_before: Any, scale: float) -> None:
        if self.complete:
            return
        if self.n == 0:
            self.start = (np.array(state_before.R, dtype=np.int64), np.array(state_before.mu, dtype=np.int64),
                          int(state_before.lfsr))
            self.scale = float(scale)
        take = min(self.limit - self.n, x.shape[0])
        self._x.append(np.asarray(x[:take], dtype=self.dtype))
        self._learn.append(np.asarray(learn[:take], dtype=bool))
        self._z.append(np.asarray(z[:take], dtype=self.dtype))
        self.n += take

    def save(self, path: str | Path) -> Path | None:
        """Write the samples so far atomically (nothing when none, or nothing new since the last save)."""
        if self.n == 0 or self.n == self.saved_n:
            return None
        d = self.fmt.size
        x = np.concatenate(self._x) if self._x else np.zeros((0, d), self.dtype)
        z = np.concatenate(self._z) if self._z else np.zeros((0, d), self.dtype)
        learn = np.concatenate(self._learn) if self._learn else np.zeros(0, bool)
        self._x, self._z, self._learn = [x], [z], [learn]
        buf = io.BytesIO()
        R0, mu0, lfsr0 = self.start
        np.savez(
            buf, x=x, learn=learn, z=z, R0=R0, mu0=mu0, lfsr0=np.int64(lfsr0), scale=np.float64(self.scale),
            layer=np.int64(self.layer), limit=np.int64(self.limit), format=np.array(json.dumps(self.fmt.to_dict())),
        )
        with atomic_write(path, "wb") as f:
            f.write(buf.getvalue())
        self.saved_n = self.n
        return Path(path)

    def restore(self, rec: Recording, samples_seen: int) -> None:
        """Continue from a saved recording, cut to the ``samples_seen`` of the resumed state."""
        keep = min(rec.samples, samples_seen, self.limit)
        if keep < min(samples_seen, self.limit):  # samples between the file's end and the state were not kept
            self.limit = keep  # stop here rather than record a stream with a gap
        self._x, self._z = [rec.x[:keep].astype(self.dtype)], [rec.z[:keep].astype(self.dtype)]
        self._learn = [rec.learn[:keep]]
        self.n = keep
        self.start = (rec.R0, rec.mu0, rec.lfsr0)
        self.scale = rec.scale
        self.fmt = rec.fmt
        self.saved_n = rec.samples if keep == rec.samples else -1


def load_recording(path: str | Path) -> Recording:
    """Read a recorded stream (DataError naming the fix if missing or corrupt)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"no recorded stream at {p}; train with --decor-numerics fixed and --cosim-record K > 0 first "
            "(or pass a config to 'cosim check', which trains until K samples are recorded)"
        )
    try:
        with np.load(p, allow_pickle=False) as f:
            fmt = UnitFormat.from_dict(json.loads(str(f["format"])))
            rec = Recording(
                layer=int(f["layer"]), fmt=fmt, scale=float(f["scale"]), x=f["x"].astype(np.int64),
                learn=f["learn"].astype(bool), z=f["z"].astype(np.int64), R0=f["R0"].astype(np.int64),
                mu0=f["mu0"].astype(np.int64), lfsr0=int(f["lfsr0"]), limit=int(f["limit"]),
            )
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise DataError(f"the recorded stream {p} is corrupt ({type(e).__name__}); train the run again") from None
    if rec.x.shape != rec.z.shape or rec.x.shape[0] != rec.learn.shape[0] or rec.x.shape[1:] != (fmt.size,):
        raise DataError(f"the recorded stream {p} is inconsistent (x {rec.x.shape}, z {rec.z.shape}); train again")
    return rec


def attach(net: Any, limit: int) -> None:
    """Give every FixedDecorrelator of ``net`` a recorder of its first ``limit`` samples (0: none)."""
    from .decorrelator import FixedDecorrelator

    for i, decor in net.decorrelators:
        if isinstance(decor, FixedDecorrelator):
            decor.recorder = StreamRecorder(i, decor.fmt, limit) if limit > 0 else None


def save_all(net: Any, run_dir: str | Path) -> list[Path]:
    """Write every layer's recording (atomically, only when it grew)."""
    out = []
    for i, decor in net.decorrelators:
        rec = getattr(decor, "recorder", None)
        if rec is not None:
            p = rec.save(recording_path(run_dir, i))
            if p is not None:
                out.append(p)
    return out


def restore_all(net: Any, run_dir: str | Path) -> None:
    """On resume: load each layer's recording so far (cut to the samples the checkpoint's unit has seen)."""
    for i, decor in net.decorrelators:
        rec = getattr(decor, "recorder", None)
        path = recording_path(run_dir, i)
        if rec is not None and path.is_file():
            rec.restore(load_recording(path), int(decor.samples_seen[0]))
