"""pytest settings for the notebooks: report how long each chapter took under nbval."""
from collections import defaultdict
from pathlib import Path

_seconds = defaultdict(float)
_failed = set()


def pytest_runtest_logreport(report):
    path = Path(report.nodeid.split("::")[0]).name
    if path.endswith(".ipynb"):
        _seconds[path] += report.duration
        if report.failed:
            _failed.add(path)


def pytest_terminal_summary(terminalreporter):
    if not _seconds:
        return
    terminalreporter.section("time per notebook")
    for path, seconds in sorted(_seconds.items()):
        state = "FAILED" if path in _failed else "ok"
        terminalreporter.write_line(f"{path:40s} {seconds:7.1f} s  {state}")
    terminalreporter.write_line(f"{'total':40s} {sum(_seconds.values()):7.1f} s")
