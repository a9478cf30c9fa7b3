"""Argument checks of the OSC server's requests: each raises :class:`Refused` with the reason the
client gets back in ``/pimodule/error``. Replies are built from what these return, never from the
raw arguments (a reply that cannot be encoded is a bug the fuzz tests look for)."""

from __future__ import annotations

import math
import re

from pimodule.device.io.osc_client import FLOAT32_MAX, INT32

# Models are named, never given as paths (the store's rule, docs/model-file.md): `\Z`, not `$`,
# which would accept a trailing newline.
MODEL_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
MODEL_NAME_RULE = "1-64 characters of a-z 0-9 _ -, starting with a letter or a digit"
MAX_ECHO_STRING = 256  # longest string a ping may have echoed


class Refused(Exception):
    """A request the server answers with ``/pimodule/error`` (address, this message)."""


def one_number(args: list) -> float:
    if len(args) != 1:
        raise Refused(f"expected one number, got {len(args)} arguments")
    a = args[0]
    if isinstance(a, bool) or not isinstance(a, (int, float)):
        raise Refused(f"expected a number, got {type(a).__name__}")
    try:
        value = float(a)
    except OverflowError:  # an int beyond float range cannot come from OSC, but never trust
        raise Refused("number out of range") from None
    if not math.isfinite(value):
        raise Refused(f"{a} is not a finite number")
    return value


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


def model_name(args: list) -> str:
    """One model name (never a path): refused unless it follows MODEL_NAME_RE."""
    name = one_string(args)
    if not MODEL_NAME_RE.match(name):
        shown = repr(name)[:60]
        what = "a path" if "/" in name or "." in name else "not a model name"
        raise Refused(f"{shown} is {what}: models are named ({MODEL_NAME_RULE}), never given as paths")
    return name


def echo_args(args: list) -> list:
    """The arguments a ping may have echoed, converted to what OSC carries faithfully: an integer
    that fits int32 (i), a finite float that fits float32 (f), a string of at most 256 characters
    (s). Anything else (int64 beyond int32, a double beyond float32, NaN, blobs, arrays...) is
    refused, naming the argument."""
    out: list = []
    for k, a in enumerate(args):
        if isinstance(a, bool) or a is None:
            raise Refused(f"ping argument {k + 1}: only numbers and strings are echoed")
        if isinstance(a, int):
            if not INT32[0] <= a <= INT32[1]:
                raise Refused(f"ping argument {k + 1}: integer {a} does not fit int32")
            out.append(a)
        elif isinstance(a, float):
            if not math.isfinite(a) or abs(a) > FLOAT32_MAX:
                raise Refused(f"ping argument {k + 1}: {a!r} is not a finite float32")
            out.append(a)
        elif isinstance(a, str):
            if len(a) > MAX_ECHO_STRING:
                raise Refused(f"ping argument {k + 1}: string longer than {MAX_ECHO_STRING} characters")
            out.append(a)
        else:
            raise Refused(f"ping argument {k + 1}: only numbers and strings are echoed")
    return out
