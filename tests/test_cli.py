"""The collcost console script: every listed command's --help, the list itself, and
the errors for unknown or unavailable commands."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from collcost import cli

ROOT = Path(__file__).resolve().parents[1]


def _collcost(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "collcost", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_help_lists_every_available_command_once_within_100_columns():
    res = _collcost("--help")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    for name, command in cli.COMMANDS.items():
        listed = [line for line in lines if line.startswith(f"  {name} ")]
        if cli.available(command):
            assert len(listed) == 1, name
            assert command.runs in listed[0] and command.summary in listed[0]
        else:
            assert not listed and f"{name} ({command.module})" in " ".join(lines)
    assert _collcost().stdout == res.stdout  # no arguments: the same list


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_help(name):
    """collcost NAME --help is the module's own help (exit 0), for every command whose
    module exists in this tree (others are skipped until they land)."""
    command = cli.COMMANDS[name]
    if not cli.available(command):
        pytest.skip(f"module {command.module} is not in this tree yet")
    res = _collcost(name, "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage:"), res.stdout[:200]
    direct = subprocess.run([sys.executable, "-m", command.runs, "--help"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert direct.returncode == 0
    # the same options either way (only the program name in the usage may differ)
    strip = lambda t: [line for line in t.splitlines() if line.strip().startswith("-")]  # noqa: E731
    assert strip(res.stdout) == strip(direct.stdout)
    assert _collcost("help", name).stdout == res.stdout


def test_unknown_command_suggests():
    res = _collcost("fti")
    assert res.returncode == 2 and "unknown command 'fti'" in res.stderr
    assert "did you mean fit" in res.stderr and res.stdout == ""
    res = _collcost("--verbose")
    assert res.returncode == 2 and "command comes first" in res.stderr


def test_unavailable_command(monkeypatch, capsys):
    fake = cli.Command("ghost", "collectives.no_such_module", "a ghost", cli.GROUPS[-1])
    monkeypatch.setitem(cli.COMMANDS, "ghost", fake)
    assert not cli.available(fake)
    assert cli.main(["ghost", "--help"]) == 2
    err = capsys.readouterr().err
    assert "not available" in err and "collectives.no_such_module" in err
    assert "ghost " not in cli.format_help().split("Not in this installation")[0]


def test_dispatch_returns_the_commands_status(monkeypatch, capsys):
    """The command's own exit status comes back: 0 for --help, 2 for a usage error."""
    assert cli.main(["merge", "--help"]) == 0
    assert cli.main(["merge"]) == 2  # RUN arguments missing
    assert "usage:" in capsys.readouterr().err


def test_prog_is_passed_to_commands_that_take_it():
    res = _collcost("summary", "--help")
    assert res.stdout.startswith("usage: collcost summary")


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("collcost")
    if not script.exists():
        pytest.skip("collcost console script not installed next to this Python "
                    "(pip install -e . creates it)")
    res = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("collcost ")


@pytest.mark.parametrize("package", ["collectives"])
def test_python_m_package_points_to_collcost(package):
    res = subprocess.run([sys.executable, "-m", package], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={**os.environ})
    assert res.returncode == 0, res.stderr
    assert "collcost --help" in res.stdout and "collectives.sweep" in res.stdout
