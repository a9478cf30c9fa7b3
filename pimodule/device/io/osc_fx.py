"""The fx mode's OSC requests (``/pimodule/fx/…``, docs/osc.md), for :class:`pimodule.device.io.osc.OscServer`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pimodule.device.io.osc_args import Refused, no_args, one_number, one_string

FX_PATHS = ("fx/match", "fx/model", "fx/list", "fx/estimate", "fx/hold", "fx/set", "fx/matched")


def dispatch_fx(path: str, address: str, args: list, controller: Any, send: Callable[..., None]) -> None:
    """Carry out fx request ``path`` (``fx/…``); ``send(address, *args)`` replies to the sender."""
    if getattr(controller, "set_fx_match", None) is None:
        raise Refused("this daemon has no fx mode")
    if path == "fx/match":
        on = bool(one_number(args))
        controller.set_fx_match(on)
        send(address, int(on))
    elif path == "fx/model":
        name = one_string(args)
        controller.set_fx_model(name)
        send("/pimodule/fx/loading", name)
    elif path == "fx/list":
        no_args(args)
        send("/pimodule/fx/models", *controller.list_fx_models())
    elif path == "fx/estimate":
        no_args(args)
        for fx_address, fx_args in controller.fx_messages():
            send(fx_address, *fx_args)
    elif path == "fx/hold":
        on = bool(one_number(args))
        controller.set_fx_hold(on)
        send(address, int(on))
    elif path == "fx/set":
        if len(args) != 3 or not all(isinstance(a, str) for a in args[:2]):
            raise Refused("expected effect s, name s and a value (f, or s for the distortion's mode)")
        effect, name, value = args
        if not isinstance(value, str):
            value = one_number([value])
        applied = controller.set_fx_value(effect, name, value)
        send(address, effect, name, applied)
    elif path == "fx/matched":
        no_args(args)
        for fx_address, fx_args in controller.fx_matched_messages():
            send(fx_address, *fx_args)
    else:
        raise Refused("unknown address")
