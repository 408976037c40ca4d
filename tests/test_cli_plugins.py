"""The CLI's seams: minitnet never imports emulator; the emulator's commands arrive as plug-ins."""

import re
import subprocess
import sys
import textwrap

import pytest

from minitnet.cli import PLUGIN_GROUP, main


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_no_minitnet_module_imports_emulator():
    # a fresh interpreter: this one may have imported emulator already
    r = _python("""
        import importlib, importlib.util, pkgutil, sys
        import minitnet
        skip = () if importlib.util.find_spec("torch") else ("minitnet.torch",)
        names = ["minitnet"]
        for m in pkgutil.walk_packages(minitnet.__path__, "minitnet."):
            if not m.name.startswith(skip) and m.name != "minitnet.__main__":
                names.append(m.name)
        for name in names:
            importlib.import_module(name)
        bad = sorted(m for m in sys.modules if m == "emulator" or m.startswith("emulator."))
        assert not bad, f"importing {len(names)} minitnet modules loaded {bad}"
        assert "minitnet.cli" in names and "minitnet.cli.common" in names, names
        print(len(names))
    """)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) > 10


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("segment", "info", "eval", "search", "emulate", "emulate-eval", "emulate-timing"):
        assert re.search(rf"^    {name}(\s|$)", out, re.M), out
    assert "unavailable" not in out, out


def test_emulator_commands_come_from_the_entry_point():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP)}
    assert eps.get("emulate") == "emulator.cli", f"{PLUGIN_GROUP} entry points: {eps}; reinstall with pip install -e ."


class _EntryPoint:
    """Just what minitnet.cli reads of an importlib.metadata.EntryPoint."""

    def __init__(self, name, value, load):
        self.name, self.value, self.load = name, value, load


def _fake_plugins(monkeypatch, *eps):
    import minitnet.cli as cli

    monkeypatch.setattr(cli, "entry_points", lambda group: list(eps) if group == PLUGIN_GROUP else [])


def test_a_plugin_registers_its_own_commands(monkeypatch, capsys):
    class Mod:
        @staticmethod
        def register(sub):
            p = sub.add_parser("hello", help="say hello")
            p.add_argument("--name", default="world")
            p.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)

    _fake_plugins(monkeypatch, _EntryPoint("hello", "some.module", lambda: Mod))
    assert main(["hello", "--name", "tile"]) == 0
    assert capsys.readouterr().out == "hello tile\n"


def test_a_broken_plugin_is_listed_and_explains_itself(monkeypatch, capsys):
    def load():
        raise ImportError("No module named 'emulator.sweep_cli'")

    _fake_plugins(monkeypatch, _EntryPoint("sweep", "emulator.sweep_cli", load))
    assert main(["info", "--iterations", "2", "--width", "8", "--json"]) == 0  # the others still work
    capsys.readouterr()
    assert main(["sweep", "--anything"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minitnet sweep: error:") and "emulator.sweep_cli" in err and "pip install -e" in err, err


def test_one_error_policy(capsys, tmp_path):
    import emulator.errors
    import minitnet.errors as E

    assert issubclass(emulator.errors.ConfigError, E.ConfigError)
    for cls, builtin in ((E.ShapeError, ValueError), (E.ConfigError, ValueError), (E.InputTypeError, TypeError)):
        assert issubclass(cls, E.MinitnetError) and issubclass(cls, builtin)
    # an emulator ConfigError reaches the user as one line, exit status 1
    assert main(["emulate-timing", "--iterations", "2", "--height", "16", "--width-px", "16", "--set", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minitnet emulate-timing: error: --set 'x'") and "Traceback" not in err, err
