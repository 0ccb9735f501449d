"""tutorial_utils.config: the run-time switches, parsed strictly in one place."""
import os

import pytest

from tutorial_utils import config

ON = ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " 1 ", "true\n"]
OFF = ["0", "false", "FALSE", "no", "No", "off", "OFF", "", "  "]
SWITCHES = [(config.QUICK_ENV, config.is_quick), (config.LUNG_STANDIN_ENV, config.lung_standin)]


@pytest.mark.parametrize("name, read", SWITCHES)
@pytest.mark.parametrize("value", ON)
def test_every_on_spelling(monkeypatch, name, read, value):
    monkeypatch.setenv(name, value)
    assert read() is True


@pytest.mark.parametrize("name, read", SWITCHES)
@pytest.mark.parametrize("value", OFF)
def test_every_off_spelling(monkeypatch, name, read, value):
    monkeypatch.setenv(name, value)
    assert read() is False


@pytest.mark.parametrize("name, read", SWITCHES)
def test_unset_is_off(monkeypatch, name, read):
    monkeypatch.delenv(name, raising=False)
    assert read() is False


@pytest.mark.parametrize("name, read", SWITCHES)
@pytest.mark.parametrize("value", ["2", "ture", "y", "enable", "1.0", "-1", "true false"])
def test_unknown_value_raises_naming_variable_value_and_accepted(monkeypatch, name, read, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as error:
        read()
    message = str(error.value)
    assert name in message and repr(value) in message
    for accepted in ("1", "true", "yes", "on", "0", "false", "no", "off", "unset"):
        assert accepted in message


def test_switches_are_independent_and_leave_the_environment_alone(monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "1")
    monkeypatch.setenv(config.LUNG_STANDIN_ENV, "off")
    before = dict(os.environ)
    assert config.is_quick() is True and config.lung_standin() is False
    assert config.pick(full=10, quick=2) == 2 and "QUICK" in config.describe_mode()
    assert dict(os.environ) == before


def test_the_old_chapter_5_test_would_have_missed_true(monkeypatch):
    """Chapter 5 used ``os.environ.get(...) == "1"``, which reads "true" as off."""
    monkeypatch.setenv(config.LUNG_STANDIN_ENV, "true")
    assert (os.environ.get("TUTORIAL_LUNG_STANDIN", "0") == "1") is False
    assert config.lung_standin() is True
