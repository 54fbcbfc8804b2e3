"""Every generation-time mistake is a one-line error from `analogdecorr hdl export`, never a traceback."""

from __future__ import annotations

import pytest

from analogdecorr.cli import main

BASE = {"--size": "4", "--width": "16", "--frac": "12", "--r-width": "28", "--r-frac": "20", "--shift": "10"}


@pytest.mark.parametrize(
    "change,expect",
    [
        ({"--size": "1"}, "size"),
        ({"--frac": "16"}, "frac"),
        ({"--r-width": "12"}, "r_width"),
        ({"--r-frac": "8"}, "r_frac"),
        ({"--width": "20", "--frac": "12"}, "width"),
        ({"--width": "6", "--frac": "3", "--r-width": "12", "--r-frac": "6", "--shift": "2"}, "width"),
        ({"--shift": "21"}, "shift"),
        ({"--rounding": "half_evn"}, "half_even"),
        ({"--rule": "kappa"}, "4th product"),
        ({"--rule": "whitten"}, "whiten"),
        ({"--centre-shift": "17"}, "centre_shift=17"),
        ({"--centre-shift": "-1"}, "centre_shift=-1"),
        ({"--lanes": "0"}, "lanes=0"),
        ({"--samples": "0"}, "samples must be a positive integer"),
    ],
)
def test_export_rejects_bad_parameters_in_one_line(tmp_path, capsys, change, expect):
    args = {**BASE, "--samples": "4", **change}
    argv = ["hdl", "export", *[x for kv in args.items() for x in kv], "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert expect in err
    assert not (tmp_path / "o").exists(), "nothing may be written for a rejected export"


@pytest.mark.parametrize("flag", [["--arch", "row"], ["--delayed"]])
def test_removed_flags_are_refused_by_the_parser(tmp_path, capsys, flag):
    """--arch (one memory-backed architecture now: --lanes) and --delayed (removed: it saved no cycles)."""
    with pytest.raises(SystemExit) as exc:
        main(["hdl", "export", *flag, "-o", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unrecognized arguments" in err and flag[0] in err
    assert not (tmp_path / "o").exists()
