"""Progress text shared by the stages: done/total, rate and time left."""

from __future__ import annotations


def hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def progress_text(done: int, total: int, seconds: float, unit: str = "images") -> str:
    """``'120/4436 images (3.1/s, ETA 0:23:13)'``; the ETA is '?' until something is done."""
    rate = done / seconds if seconds > 0 else 0.0
    eta = hms((total - done) / rate) if rate > 0 else "?"
    return f"{done}/{total} {unit} ({rate:.1f}/s, ETA {eta})"
