"""Every ```python and ```bash block of README.md runs as printed.

Python blocks run, each on its own, in a fresh interpreter; in bash blocks, each
``fxtract ...`` line runs through the CLI (in this process, with CliRunner) and must
exit 0. A block that needs what a test machine lacks (a download, a GPU, the Makefile
that rebuilds the virtual environment) is skipped when the line before it is
``<!-- no-test: reason -->``. The run's summary says how many blocks ran and were skipped
(``pytest_terminal_summary`` in ``conftest.py``).

Every block runs in a temporary folder holding ``examples/`` and ``tests/`` of this
checkout and the small inputs the README's examples name (``photos/``: an image folder of two
classes, ``cat.jpg``), so a block that writes files leaves nothing behind and paths such as
``examples/models.py`` resolve.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SRC = ROOT / "src"
_FENCE = re.compile(r"^```(\w*)\s*$")
_NO_TEST = re.compile(r"^<!--\s*no-test:\s*(.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # 1-based line of the opening fence
    code: str
    skip: str  # the no-test reason, or ""

    @property
    def id(self) -> str:
        return f"{self.language}-L{self.line}"


def readme_blocks(text: str) -> list[Block]:
    """The ```python and ```bash blocks of ``text``, with the no-test reason of each."""
    blocks = []
    lines = text.splitlines()
    k = 0
    while k < len(lines):
        match = _FENCE.match(lines[k])
        if not match:
            k += 1
            continue
        start, language = k, match.group(1)
        end = next((j for j in range(k + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise AssertionError(f"README.md line {k + 1}: a ``` block is never closed")
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = _NO_TEST.match(previous.strip())
        if language in ("python", "bash"):
            code = "\n".join(lines[start + 1 : end])
            blocks.append(Block(language, start + 1, code, skip.group(1) if skip else ""))
        k = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def fxtract_commands(code: str) -> list[list[str]]:
    """The ``fxtract ...`` command lines of a bash block (comments and continuations handled)."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "fxtract":
            commands.append(words[1:])
    return commands


def make_photos(folder: Path, per_class: int = 4, size: int = 64) -> None:
    """An ImageFolder-style folder of random JPEGs in two classes, and ``cat.jpg`` beside it."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (folder / "photos" / label).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "photos" / label / f"{k}.jpg")
    (folder / "cat.jpg").write_bytes((folder / "photos" / "cats" / "0.jpg").read_bytes())


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("examples", "tests"):
        if (ROOT / name).is_dir():
            (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    make_photos(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_blocks():
    languages = {b.language for b in BLOCKS}
    assert {"python", "bash"} <= languages, languages
    skipped = [b for b in BLOCKS if b.skip]
    # no-test is for the exceptions: most blocks must run.
    assert len(skipped) * 4 <= len(BLOCKS), [b.id for b in skipped]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block(block: Block, workdir: Path):
    if block.skip:
        pytest.skip(f"README.md line {block.line}: no-test: {block.skip}")
    if block.language == "python":
        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        env.setdefault("TQDM_DISABLE", "1")
        result = subprocess.run(
            [sys.executable, "-c", block.code],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"README.md line {block.line}: the python block fails:\n{block.code}\n--- stderr:\n{result.stderr[-3000:]}"
        )
    else:
        from click.testing import CliRunner

        from fxtract._cli import main

        commands = fxtract_commands(block.code)
        assert commands, (
            f"README.md line {block.line}: a bash block without an `fxtract` command; mark it "
            "<!-- no-test: reason --> if it cannot run in a test"
        )
        for args in commands:
            result = CliRunner().invoke(main, args, catch_exceptions=False)
            assert result.exit_code == 0, (
                f"README.md line {block.line}: `fxtract {shlex.join(args)}` exits {result.exit_code}:\n"
                f"{result.output[-3000:]}"
            )
