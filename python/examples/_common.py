"""Helpers shared by the examples: the size argument."""

import sys


def size_arg(name: str, default: int) -> int:
    """The first command-line argument as a positive number (``default`` when absent)."""
    if len(sys.argv) < 2:
        return default
    try:
        value = int(sys.argv[1])
    except ValueError:
        sys.exit(f"{name} must be a number, got '{sys.argv[1]}'")
    if value <= 0:
        sys.exit(f"{name} must be a positive number, got '{sys.argv[1]}'")
    return value
