"""The one exception type for bad video input from a user.

The CLI catches `ClipError`, prints its message (one sentence that says what to fix) and
exits with status 2; it subclasses `ValueError` so generic callers can still catch it.
"""

from __future__ import annotations


class ClipError(ValueError):
    """Bad input from a user (missing/corrupt video, bad data spec); the message says what to fix."""
