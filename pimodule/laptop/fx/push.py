"""Push an effect-chain estimate to a running module: ``pimodule estimate ... --send HOST[:PORT]``.

The module's own estimate follows its input L live; a chain worked out on the laptop (e.g. refined
by analysis by synthesis, :mod:`pimodule.laptop.fx.refine`, which needs torch) is sent over OSC instead
and held there: ``/pimodule/fx/hold 1``, then every value as ``/pimodule/fx/set effect name
value`` (parameters in their physical units, then the on/off decisions and the distortion's
curve), then ``/pimodule/fx/match 1`` so input R is heard through it. Each request waits for its
reply (resent if lost); whatever the module refuses is collected and reported, never skipped
silently. ``/pimodule/fx/hold 0`` on the module lets the chain follow its own estimates again.
"""

from __future__ import annotations

from pimodule.device.io.osc_client import OscClient

DEFAULT_PORT = 9000


def parse_target(text: str) -> tuple[str, int]:
    """``host`` or ``host:port`` -> (host, port); ValueError otherwise."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(DEFAULT_PORT))
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--send needs HOST or HOST:PORT, not {text!r}")
    return host, int(port)


def chain_messages(description: dict, match: bool = True) -> list[tuple[str, tuple]]:
    """The OSC requests that put ``description`` (:func:`pimodule.laptop.fx.chain.describe`) on a module."""
    out: list[tuple[str, tuple]] = [("/pimodule/fx/hold", (1,))]
    for effect, item in description.items():
        out += [("/pimodule/fx/set", (effect, name, float(value))) for name, value in item["params"].items()]
    for effect, item in description.items():
        if "mode" in item:
            out.append(("/pimodule/fx/set", (effect, "mode", str(item["mode"]))))
        out.append(("/pimodule/fx/set", (effect, "active", int(bool(item["active"])))))
    if match:
        out.append(("/pimodule/fx/match", (1,)))
    return out


def push(
    description: dict, host: str, port: int = DEFAULT_PORT, match: bool = True, timeout_s: float = 5.0
) -> list[str]:
    """Send ``description`` to the module at ``host:port``; returns the module's refusals as
    ``"address: reason"`` lines (empty when everything was taken). TimeoutError if it does not answer."""
    refused = []
    with OscClient(host, port) as client:
        for address, args in chain_messages(description, match):
            reply = client.request(address, *args, timeout_s=timeout_s, accept=_reply_to(address, args))
            if reply[0] == "/pimodule/error":
                refused.append(f"{' '.join([address, *map(str, args)])}: {reply[1][-1] if reply[1] else ''}")
    return refused


def _reply_to(address: str, args: tuple):
    """Accepts the reply to one request: its echo (for a set, of the same effect and name), or
    the error it caused."""

    def accept(msg: tuple[str, list]) -> bool:
        if msg[0] == "/pimodule/error":
            return msg[1][:1] == [address]
        return msg[0] == address and (address != "/pimodule/fx/set" or msg[1][:2] == list(args[:2]))

    return accept
