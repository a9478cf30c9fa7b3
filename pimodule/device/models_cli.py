"""The models installed on this module: list them, or put a model's previous version back.

``list`` shows each model's name, kind, rate, size, SHA-256, a provenance summary and whether
a previous version is kept (every install keeps the one it replaced, in ``.previous/``).
``rollback NAME`` puts the previous version back in one atomic step; the replaced one becomes
the previous (so a second rollback undoes the first). The running daemon plays the rolled-back
voice once it is loaded again (``/pimodule/model/load NAME`` over OSC, or a restart).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pimodule.core.modelfile import ModelFileError
from pimodule.device import config as config_mod
from pimodule.device.store import ModelStore

EXAMPLES = (
    "pimodule models list --config /etc/pimodule/config.toml",
    "pimodule models list --json",
    "pimodule models rollback violin",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "rollback"), help="list the models, or roll one back")
    parser.add_argument("name", nargs="?", help="the model to roll back (rollback only)")
    parser.add_argument("--config", type=Path, help="the daemon's config TOML (its [models] dir)")
    parser.add_argument("--models-dir", type=Path, help="the models directory (instead of the config's)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def store_from_args(args: argparse.Namespace) -> ModelStore:
    if args.models_dir is not None:
        return ModelStore(args.models_dir)
    config = args.config
    if config is None and Path("/etc/pimodule/config.toml").is_file():
        config = Path("/etc/pimodule/config.toml")
    return ModelStore(config_mod.load_config(config).models_dir())


def _table(entries) -> str:
    rows = [("name", "kind", "rate", "bytes", "sha256", "previous", "provenance")]
    for e in entries:
        rows.append(
            (
                e.name,
                e.kind or "refused",
                f"{e.sample_rate or '-'}",
                str(e.bytes),
                e.sha256[:12],
                "yes" if e.previous else "no",
                e.provenance if not e.error else f"refused: {e.error[:80]}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows)


def main(args: argparse.Namespace) -> int:
    try:
        store = store_from_args(args)
    except config_mod.ConfigError as err:
        print(f"pimodule models: {err}", file=sys.stderr)
        return 2
    if args.action == "list":
        entries = store.entries()
        if args.json:
            print(json.dumps({"dir": str(store.directory), "models": [e.to_dict() for e in entries]}, indent=1))
        elif not entries:
            print(f"no models in {store.directory}")
        else:
            print(_table(entries))
        return 0
    if not args.name:
        print("pimodule models rollback: say which model (pimodule models rollback NAME)", file=sys.stderr)
        return 2
    try:
        path = store.rollback(args.name)
    except ModelFileError as err:
        print(f"pimodule models rollback: {err}", file=sys.stderr)
        return 1
    entry = store.entry(args.name)
    if args.json:
        print(json.dumps(entry.to_dict()))
    else:
        print(f"{args.name}: rolled back to its previous version ({entry.sha256[:12]}, {entry.bytes} bytes) at {path}")
        print(f"undo with: pimodule models rollback {args.name}")
    return 0
