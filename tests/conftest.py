import os

import pytest
import torch

# Two cores: one thread per pytest-xdist worker keeps the run predictable.
torch.set_num_threads(int(os.environ.get("FXTRACT_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_terminal_summary(terminalreporter):
    """How many README blocks ran (tests/test_readme.py), so a skipped or vanished block shows."""
    stats = terminalreporter.stats
    readme = {
        outcome: [r for r in stats.get(outcome, []) if "test_readme.py::test_readme_block" in r.nodeid]
        for outcome in ("passed", "failed", "skipped")
    }
    if any(readme.values()):
        skipped = ", ".join(r.nodeid.rsplit("[", 1)[-1].rstrip("]") for r in readme["skipped"]) or "none"
        terminalreporter.write_line(
            f"README.md blocks: {len(readme['passed'])} ran and passed, {len(readme['failed'])} failed, "
            f"{len(readme['skipped'])} marked no-test ({skipped})"
        )
