"""User-facing errors: the CLI prints these as one line (no traceback)."""


class AnalogDecorrError(Exception):
    """Base class: a problem the user can fix; the message names the problem and the fix."""


class ConfigError(AnalogDecorrError, ValueError):
    """A configuration value, flag or config file is invalid."""


class DataError(AnalogDecorrError, ValueError):
    """A dataset, data file or input batch is missing or malformed."""


class DivergenceError(AnalogDecorrError, FloatingPointError):
    """Training produced NaN/Inf; the message names the layer and the likely cause."""


class EnvironmentMismatchError(AnalogDecorrError, RuntimeError):
    """An installed dependency does not work (e.g. aihwkit's simulator vs the torch ABI)."""


class FormatError(AnalogDecorrError, ValueError):
    """A fixed-point format or hardware-generation parameter cannot work."""
