"""The bad-input contract of the command line, shared by the tests of every command."""

from __future__ import annotations

import pytest

from edgeseg.cli import main


def assert_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``edgeseg ARGV``: exit status 2 and one stderr line containing ``needle``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    return err
