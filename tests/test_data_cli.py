"""tutorial_utils.data.cli: ``python -m tutorial_utils.data list | fetch | verify``."""
import os
import subprocess
import sys

from tutorial_utils import data
from data_fixtures import REPO, isolated  # noqa: F401  (a fixture)


def test_command_line_list_and_fetch(isolated, monkeypatch, mirror_dir, capsys):
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror_dir))
    assert data.main(["list"]) == 0
    assert "paired_ct_lung_standin" in capsys.readouterr().out
    assert data.main(["fetch", "hnct", "promise12"]) == 0
    assert "1 files verified" in capsys.readouterr().out
    assert data.main(["verify"]) == 0


def test_command_line_verify_reports_unusable_cache_entries(isolated, capsys):
    (isolated / "cache" / "hnct" / "demo.h5").mkdir(parents=True)  # a folder where the file should be
    assert data.main(["verify"]) == 1
    assert "hnct/demo.h5: UNUSABLE: is a folder where the file should be" in capsys.readouterr().out


def test_python_dash_m_runs_from_another_folder(isolated):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "tutorial_utils.data", "list"], capture_output=True, text=True,
                            cwd=isolated, env=env)
    assert result.returncode == 0, result.stderr
    assert "hnct" in result.stdout and str(isolated / "cache") in result.stdout
    assert "RuntimeWarning" not in result.stderr
