"""Typed errors that name the problem and the fix, and the checks that raise them.

Each inherits from the built-in exception a caller would naturally catch (ValueError for bad
input, IndexError for a bad layer/head), so `except ValueError` keeps working.
"""

import operator


class LmscopeError(Exception):
    """Base class of every error lmscope raises on purpose."""


class InputError(LmscopeError, ValueError):
    """An argument cannot be used: empty or too long text, unknown ids, a value of the wrong
    kind or outside its range."""


class OutOfRangeError(InputError, IndexError):
    """A layer, head, position or similar index lies outside the valid range."""


class UnknownModelError(LmscopeError, OSError):
    """A model id is neither a local folder, nor cached, nor reachable on the hub."""


class UnsupportedArchitectureError(LmscopeError, TypeError):
    """lmscope does not know where this model keeps its blocks, attention, MLP or norms."""


class MemoryBudgetError(LmscopeError, MemoryError):
    """A run or view would need more memory than the configured budget allows."""


# -- the one set of argument checks every view and analysis uses ---------------------------------
def check_index(name: str, value: int, size: int) -> int:
    """Return `value` as an int in [0, size), accepting Python-style negatives, or raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(value)  # numpy / torch integer scalars
        except (TypeError, ValueError):
            raise OutOfRangeError(f"{name} must be an integer, got {value!r}") from None
    if not -size <= value < size:
        raise OutOfRangeError(
            f"{name} {value} is out of range: this model has {size} {name}s, valid: 0..{size - 1}"
        )
    return value % size


def check_optional_index(name: str, value: int, size: int) -> int:
    """`check_index`, except that -1 stays -1: "nothing selected"."""
    return -1 if _as_int(value) == -1 else check_index(name, value, size)


def _as_int(value: object) -> int | None:
    """The integer `value` stands for (int, numpy or 0-d torch integer), None for anything else;
    a bool is not a number here (`top_k=True` is a mistake, not 1)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_count(
    name: str, value: object, *, low: int = 1, high: int | None = None, context: str = ""
) -> int:
    """A whole number (not a bool) in low..high: a top-k, a number of lags, a size. `context`
    says where the bound comes from (" for this 12-token trace")."""
    number = _as_int(value)
    if number is None:
        raise InputError(f"{name} must be an integer, got {value!r}")
    if number < low or (high is not None and number > high):
        valid = f"in {low}..{high}" if high is not None else f">= {low}"
        raise OutOfRangeError(f"{name} must be {valid}{context}, got {number}")
    return number


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """One of `choices` (a stream, a stage, a mode), or an error that lists them."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_choices(name: str, values: object, choices: tuple[str, ...]) -> tuple[str, ...]:
    """A non-empty selection of `choices`, kept in the order given."""
    picked = (values,) if isinstance(values, str) else tuple(values)  # type: ignore[arg-type]
    if not picked:
        raise InputError(f"{name} must name some of {', '.join(choices)}, got none")
    for value in picked:
        check_choice(name, value, choices)
    return picked


def check_fraction(name: str, value: object) -> float:
    """A number in [0, 1] (a threshold)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a number in 0..1, got {value!r}") from None
    if not 0.0 <= float(value) <= 1.0:
        raise OutOfRangeError(f"{name} {value} is out of range: valid 0..1")
    return float(value)
