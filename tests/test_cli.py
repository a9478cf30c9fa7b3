"""The command line explains itself: every command has a description, defaults and examples."""

import importlib

import pytest

from pimodule.cli import COMMANDS, main

LEAVES = [
    (name, None) if isinstance(t, str) else (name, family)
    for name, t in COMMANDS.items()
    for family in ([None] if isinstance(t, str) else t)
]


def _module(name, family):
    target = COMMANDS[name]
    return importlib.import_module(target if family is None else target[family])


@pytest.mark.parametrize("name,family", LEAVES, ids=[f"{n} {f or ''}".strip() for n, f in LEAVES])
def test_every_command_has_help_with_description_defaults_and_examples(name, family, capsys):
    argv = [name] + ([family] if family else []) + ["--help"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    prog = f"pimodule {name}" + (f" {family}" if family else "")
    assert prog in out
    module = _module(name, family)
    assert (module.__doc__ or "").strip(), f"{prog}: no description"
    assert len(getattr(module, "EXAMPLES", ())) >= 2, f"{prog}: fewer than two examples"
    assert "examples:" in out and module.EXAMPLES[0] in out
    for line in out.splitlines():  # every option is explained
        stripped = line.strip()
        if stripped.startswith("--") and "  " not in stripped and not stripped.endswith(("]", "}")):
            continue  # a long option whose help is on the next line
    assert "``" not in out, "raw reStructuredText markup in --help"


@pytest.mark.parametrize("name,family", LEAVES, ids=[f"{n} {f or ''}".strip() for n, f in LEAVES])
def test_every_option_has_help_text(name, family):
    import argparse

    module = _module(name, family)
    parser = argparse.ArgumentParser()
    module.configure(parser)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"pimodule {name} {family or ''}: {action.option_strings or action.dest} has no help"


def test_families_are_listed_when_missing(capsys):
    assert main(["train"]) == 2
    assert "ddsp" in capsys.readouterr().err
    assert main(["eval", "--help"]) == 0
    assert "fx" in capsys.readouterr().out


def test_version_and_verbose_anywhere(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("pimodule ")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help", "-v"])  # -v after the command is accepted
    assert exit_info.value.code == 0


def test_unknown_command_is_refused_with_the_list(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command" in err and "render" in err
