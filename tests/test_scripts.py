"""The install scripts: which interpreter makes ./.venv (scripts/fastest-python)."""

from __future__ import annotations

import subprocess
from pathlib import Path

FASTEST_PYTHON = Path(__file__).resolve().parent.parent / "scripts" / "fastest-python"

# A stand-in interpreter, answering the three questions the script asks one: whether it is a
# usable CPython 3.11+, where its executable is, and how long the loop takes it.
_INTERPRETER = """#!/usr/bin/env bash
case "$2" in
    *version_info*) exit {exit_code} ;;
    *realpath*) echo {executable} ;;
    *loop_microseconds*) echo {loop_ns} ;;
esac
"""


def _interpreter(
    folder: Path, name: str, loop_ns: int, usable: bool = True, executable: str = ""
) -> str:
    path = folder / name
    path.write_text(
        _INTERPRETER.format(
            exit_code=0 if usable else 1, executable=executable or path, loop_ns=loop_ns
        )
    )
    path.chmod(0o755)
    return str(path)


def _choose(*candidates: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FASTEST_PYTHON)],
        env={"PATH": "/usr/bin:/bin", "CSMS_PYTHONS": " ".join(candidates)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_an_interpreter_a_fifth_faster_is_chosen(tmp_path: Path) -> None:
    preferred = _interpreter(tmp_path, "preferred", loop_ns=10_000)
    optimised = _interpreter(tmp_path, "optimised", loop_ns=5_000)
    chosen = _choose(preferred, optimised)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip() == optimised
    assert f"{optimised} ({optimised}): sum(range(1000)) in 5000 ns" in chosen.stderr


def test_the_preferred_interpreter_stays_unless_another_is_a_fifth_faster(tmp_path: Path) -> None:
    preferred = _interpreter(tmp_path, "preferred", loop_ns=10_000)
    a_little_faster = _interpreter(tmp_path, "a-little-faster", loop_ns=8_500)
    chosen = _choose(preferred, a_little_faster)
    assert chosen.stdout.strip() == preferred


def test_unusable_and_repeated_interpreters_are_passed_over(tmp_path: Path) -> None:
    too_old = _interpreter(tmp_path, "too-old", loop_ns=1_000, usable=False)
    usable = _interpreter(tmp_path, "usable", loop_ns=10_000)
    # Another name for the same interpreter (a symlink, say) is timed once.
    again = _interpreter(tmp_path, "again", loop_ns=1_000, executable=usable)
    chosen = _choose(str(tmp_path / "missing"), too_old, usable, again)
    assert chosen.stdout.strip() == usable
    assert "too-old" not in chosen.stderr
    assert chosen.stderr.count("sum(range(1000))") == 1


def test_no_usable_interpreter_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    too_old = _interpreter(tmp_path, "too-old", loop_ns=1_000, usable=False)
    chosen = _choose(too_old)
    assert chosen.returncode == 1
    assert chosen.stdout == ""
    assert "no CPython 3.11 or later with its venv module among" in chosen.stderr
    assert "PYTHON=" in chosen.stderr
