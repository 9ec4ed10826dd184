"""The shared CLI error handling: an LmrecError is one escaped line on stderr and exit status 2."""

from __future__ import annotations

import pytest
import typer

from lmrec.cli._common import EXIT_ERROR, errors
from lmrec.errors import DataError


def test_lmrec_error_becomes_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_info, errors():
        raise DataError("bad [value]", source="x.csv")
    assert exit_info.value.exit_code == EXIT_ERROR == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: [file x.csv] bad [value]"  # rich markup escaped, one line


def test_other_errors_keep_their_traceback() -> None:
    with pytest.raises(KeyError), errors():
        raise KeyError("bug")
