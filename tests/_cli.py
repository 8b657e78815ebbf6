"""Helpers for tests that run `ltxlab` commands in-process and expect a refusal."""

from __future__ import annotations

from typing import Any


class RayReached(Exception):
    """Raised instead of starting Ray: the config got through every driver-side check."""


def stop_before_ray(monkeypatch: Any) -> None:
    """Make the sweep runner raise RayReached where it would start Ray (a refusal must come earlier)."""
    import ablations.runner as runner

    def reached(*args: Any, **kwargs: Any) -> None:
        raise RayReached

    monkeypatch.setattr(runner, "_init_ray", reached)


def one_sentence(capsys: Any, code: int) -> str:
    """The command's stderr, checked to be a refusal: exit 2, one line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err
