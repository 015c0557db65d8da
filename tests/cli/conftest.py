"""Fixtures of the command-line tests."""

from __future__ import annotations

import pytest


@pytest.fixture()
def one_line_error(capsys):
    """``one_line_error(code_returned, code, *fragments)``: the in-process twin of `assert_one_line_error`."""

    def check(returned: int, code: int, *fragments: str) -> str:
        err = capsys.readouterr().err.strip().splitlines()
        assert returned == code, err
        assert len(err) == 1 and err[0].startswith("rfgraph: error: "), err
        for fragment in fragments:
            assert fragment in err[0], err[0]
        return err[0]

    return check
