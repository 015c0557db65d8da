"""`rfgraph.cli.main`: the command table, ``--help`` / ``--version`` without torch, and the one error path."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import rfgraph
from rfgraph import cli
from rfgraph.cli.main import COMMANDS, build_parser

from .helpers import assert_one_line_error, run


def test_no_arguments_prints_usage(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "usage: rfgraph" in err and "analyze" in err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "MODEL [options]" in out and "analyze" in out
    for name in COMMANDS:
        assert name in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"rfgraph {rfgraph.__version__}\n"


def test_command_table():
    """Every command of the table has a parser whose ``run`` lives in the module the table names."""
    assert set(COMMANDS) == {"analyze", "zoo", "erf", "probe", "box", "sizes", "align", "lint", "time", "target"}
    parser = build_parser()
    for name, module in COMMANDS.items():
        argv = [name, "torchvision:x"] + {"zoo": [], "box": ["--node", "a"], "time": ["--sample-rate", "1"],
                                           "target": ["--node", "a", "--rf", "3"]}.get(name, [])
        args = parser.parse_args(argv[:1] if name == "zoo" else argv)
        assert args.run.__module__ == module.__name__


_NO_TORCH = textwrap.dedent(
    """
    import sys
    import rfgraph.cli
    try:
        rfgraph.cli.main({argv!r})
    except SystemExit as exc:
        assert exc.code == 0, exc.code
    print("torch" in sys.modules, "rfgraph.passes" in sys.modules)
    """
)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["zoo", "--help"], ["erf", "--help"],
                                  ["probe", "--help"], ["box", "--help"], ["torchvision:resnet50", "--help"]])
def test_help_and_version_import_no_torch(argv):
    """``rfgraph --help``, ``rfgraph COMMAND --help`` and ``--version`` build every parser without torch."""
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH.format(argv=argv)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_import_rfgraph_is_lazy():
    """``import rfgraph`` imports no torch; the public names load on first use and stay listed."""
    code = ("import sys, rfgraph, rfgraph.errors; assert 'torch' not in sys.modules; "
            "assert {'analyze', 'erf', 'probe', 'zoo', 'SymTensor', '__version__'} <= set(dir(rfgraph)); "
            "rfgraph.analyze; assert 'torch' in sys.modules; print(sorted(rfgraph.__all__) == sorted(set(rfgraph.__all__)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr


def test_public_names_resolve():
    for name in rfgraph.__all__:
        assert getattr(rfgraph, name) is not None, name
    assert callable(rfgraph.probe) and callable(rfgraph.erf) and callable(rfgraph.zoo.run)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rfgraph.nope  # noqa: B018


# -- the one error path -------------------------------------------------------------------------------


def test_factory_calling_sys_exit_is_an_error(tmp_path, one_line_error):
    """``sys.exit(0)`` in a factory (or at import of the file) must not end rfgraph with exit 0 and no output."""
    (tmp_path / "quits.py").write_text("import sys\n\ndef build():\n    sys.exit(0)\n")
    (tmp_path / "quits_early.py").write_text("import sys\nsys.exit(0)\n")
    one_line_error(cli.main([f"{tmp_path / 'quits.py'}:build"]), 1, "called sys.exit(0)")
    one_line_error(cli.main(["probe", f"{tmp_path / 'quits_early.py'}:build"]), 1, "called sys.exit(0)")


def test_forward_calling_sys_exit_is_an_error(tmp_path, one_line_error):
    (tmp_path / "net.py").write_text(textwrap.dedent(
        """
        import sys
        from torch import nn

        class Quits(nn.Module):
            def forward(self, x):
                sys.exit(3)
        """
    ))
    one_line_error(cli.main([f"{tmp_path / 'net.py'}:Quits", "--input-shape", "1,1,8"]), 1, "called sys.exit(3)")


def test_directory_as_model_file(tmp_path, one_line_error):
    (tmp_path / "net.py").mkdir()
    msg = one_line_error(cli.main([f"{tmp_path / 'net.py'}:build"]), 2, "is a directory")
    assert "path/to/file.py:build" in msg
    one_line_error(cli.main(["erf", f"{tmp_path}:build"]), 2, "is a directory")


def test_subprocess_error_is_one_line(tmp_path):
    (tmp_path / "quits.py").write_text("import sys\n\ndef build():\n    sys.exit(0)\n")
    assert_one_line_error(run("quits.py:build", cwd=tmp_path), 1, "called sys.exit(0)")


def test_internal_errors_name_the_exception(monkeypatch, one_line_error):
    from rfgraph.cli import analyze

    def boom(args):
        raise ZeroDivisionError("x")

    monkeypatch.setattr(analyze, "run", boom)
    one_line_error(cli.main(["torchvision:resnet18"]), 3, "internal error: ZeroDivisionError: x", "RFGRAPH_DEBUG")
