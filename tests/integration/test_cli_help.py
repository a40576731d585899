"""Every command-line tool explains itself: `--help` describes the tool and every option."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from benchmarks import quantization_modes
from conversion import convert, starter_model, untrained_model
from lambda_function import cli
from training import evaluate, prepare_dataset, train

CLIS: dict[str, Callable[[list[str]], object]] = {
    "lambda_function": cli.main,
    "conversion.convert": convert.main,
    "conversion.starter_model": starter_model.main,
    "conversion.untrained_model": untrained_model.main,
    "training.prepare_dataset": prepare_dataset.main,
    "training.train": train.main,
    "training.evaluate": evaluate.main,
    "benchmarks.quantization_modes": quantization_modes.main,
}


def options_without_help(help_text: str) -> list[str]:
    """Option lines in argparse's help with no description on the same or the next line."""
    lines = help_text.splitlines()
    missing = []
    for index, line in enumerate(lines):
        match = re.match(r"^  (-[\w-]+(?:[ ,][^ ]+)*)(\s{2,}\S.*)?$", line)
        if not match or match.group(2):
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if not re.match(r"^\s{6,}\S", following):
            missing.append(match.group(1))
    return missing


@pytest.mark.parametrize("name", list(CLIS))
def test_help_describes_the_tool_and_every_option(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        CLIS[name](["--help"])
    text = capsys.readouterr().out

    assert exit_info.value.code == 0
    assert text.startswith("usage:")
    description = text.split("\n\n")[1]
    assert len(description.split()) >= 4, description
    assert options_without_help(text) == [], text
