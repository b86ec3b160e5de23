"""Small checks of numbers every layer uses: whole-number values, and whole-number settings from the environment."""

import numbers
import os


def is_count(value, low=1, high=None):
    """Whether ``value`` is an int (not a bool) in ``[low, high]``."""
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def env_count(name, default):
    """The whole number ``$name`` holds (at least 1), or ``default`` when it is unset or empty.

    Raises
    ------
    ValueError
        When the variable holds something else, naming it.
    """
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return max(1, int(value))
    except ValueError:
        raise ValueError(f"{name} must be a whole number; got {value!r}.") from None
