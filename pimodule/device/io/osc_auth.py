"""Signed OSC (docs/osc.md "Authentication"): the module's side of ``/pimodule/auth``.

A packet from another host is accepted when it carries this run's nonce, a client id, a counter
and an HMAC-SHA256 over them with the module's key (``[osc] key_file``). Each client's counters
are accepted once each, within a window below the highest seen (UDP reorders, never replays).
"""

from __future__ import annotations

import collections
import secrets
from dataclasses import dataclass

from pimodule.device.io.osc_args import Refused
from pimodule.device.io.osc_client import CLIENT_ID_CHARS, NONCE_ADDRESS, auth_mac

REPLAY_WINDOW = 64  # counters this far below the highest seen are accepted once (UDP reorders)
MAX_AUTH_CLIENTS = 64  # signed clients remembered (least recently used forgotten first)


@dataclass
class _AuthClient:
    highest: int = 0
    seen: int = 0  # bit k: counter highest - k was accepted


class SignedPackets:
    """The key, this run's nonce (new at every start: signatures of a past run are void) and
    every signed client's replay window."""

    def __init__(self, key: bytes | None):
        self.key = key
        self.nonce = secrets.token_hex(16)
        self._clients: collections.OrderedDict[str, _AuthClient] = collections.OrderedDict()

    def verify(self, args: list) -> bytes:
        """The inner packet of ``/pimodule/auth``'s arguments, or Refused (why)."""
        if self.key is None:
            raise Refused("this module has no OSC key ([osc] key_file): only its own host can control it")
        if (
            len(args) != 5
            or not all(isinstance(a, str) for a in args[:2])
            or not isinstance(args[2], int)
            or isinstance(args[2], bool)
            or not all(isinstance(a, bytes) for a in args[3:])
        ):
            raise Refused("expected nonce s, client s, counter i, packet b, mac b")
        nonce, client, counter, packet, mac = args
        if not 1 <= len(client) <= 32 or not set(client) <= CLIENT_ID_CHARS or counter < 1:
            raise Refused("bad client id or counter")
        if nonce != self.nonce:
            raise Refused(f"stale nonce: ask {NONCE_ADDRESS} again (the module restarted)")
        if not secrets.compare_digest(mac, auth_mac(self.key, nonce, client, counter, packet)):
            raise Refused("bad signature (wrong key?)")
        state = self._clients.get(client)
        if state is None:
            state = self._clients[client] = _AuthClient()
            while len(self._clients) > MAX_AUTH_CLIENTS:
                self._clients.popitem(last=False)
        self._clients.move_to_end(client)
        if counter > state.highest:
            shift = counter - state.highest
            state.seen = ((state.seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) if shift < REPLAY_WINDOW else 1
            state.highest = counter
        else:
            back = state.highest - counter
            if back >= REPLAY_WINDOW or state.seen >> back & 1:
                raise Refused("replayed or too old (counter already used)")
            state.seen |= 1 << back
        return packet
