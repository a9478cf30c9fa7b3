"""Argument checks of the OSC server's requests: each raises :class:`Refused` with the reason the
client gets back in ``/pimodule/error``."""

from __future__ import annotations

import math


class Refused(Exception):
    """A request the server answers with ``/pimodule/error`` (address, this message)."""


def one_number(args: list) -> float:
    if len(args) != 1:
        raise Refused(f"expected one number, got {len(args)} arguments")
    a = args[0]
    if isinstance(a, bool) or not isinstance(a, (int, float)):
        raise Refused(f"expected a number, got {type(a).__name__}")
    if not math.isfinite(a):
        raise Refused(f"{a} is not a finite number")
    return float(a)


def one_string(args: list) -> str:
    if len(args) != 1 or not isinstance(args[0], str):
        raise Refused("expected one string")
    return args[0]


def one_port(args: list) -> int:
    port = one_number(args)
    if port != int(port) or not 1 <= port <= 65535:
        raise Refused("port must be an integer 1..65535")
    return int(port)


def no_args(args: list) -> None:
    if args:
        raise Refused("expected no arguments")
