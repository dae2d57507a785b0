"""Session set-up: a clear error when Java is missing or too old; Delta coordinates match the wheel."""

from __future__ import annotations

import stat

import pytest

from webscale_rl.spark import EnvironmentProblem, check_java, delta_maven_coordinates


def fake_java(tmp_path, version_line: str):
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


def test_old_java_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'openjdk version "11.0.2" 2019-01-15')))
    with pytest.raises(EnvironmentProblem, match="Java 17 or newer; found Java 11"):
        check_java()


def test_java_8_style_version(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'java version "1.8.0_392"')))
    with pytest.raises(EnvironmentProblem, match="found Java 8"):
        check_java()


def test_missing_java_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(EnvironmentProblem, match="no `java` was found"):
        check_java()


def test_current_java_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')))
    assert "17.0.15" in check_java()


def test_delta_coordinates_match_the_pinned_wheel():
    assert delta_maven_coordinates() == ["io.delta:delta-spark_2.13:4.0.1"]
