"""Typed errors that name the problem and the fix.

Each inherits from the built-in exception a caller would naturally catch (ValueError for bad
input, IndexError for a bad layer/head), so `except ValueError` keeps working.
"""


class LmscopeError(Exception):
    """Base class of every error lmscope raises on purpose."""


class InputError(LmscopeError, ValueError):
    """The text or token ids given to a run cannot be used (empty, too long, unknown ids)."""


class OutOfRangeError(LmscopeError, IndexError, ValueError):
    """A layer, head, position or similar index lies outside the valid range."""


class UnknownModelError(LmscopeError, OSError):
    """A model id is neither a local folder, nor cached, nor reachable on the hub."""


class UnsupportedArchitectureError(LmscopeError, TypeError):
    """lmscope does not know where this model keeps its blocks, attention, MLP or norms."""


class MemoryBudgetError(LmscopeError, MemoryError):
    """A run or view would need more memory than the configured budget allows."""


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
