"""The one progress helper (uiface_ray.progress.Progress) every stage's line comes from: this run's
rate (what an earlier run did is not counted), the time left, one line every ``every_s`` seconds and
the last one once.  A fake clock: no sleeping."""

from __future__ import annotations

from uiface_ray.progress import Progress, eta_text, hms, progress_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_and_eta_count_only_this_run():
    clock = Clock()
    p = Progress(1000, 400, every_s=5.0, clock=clock)  # 400 done by an earlier run
    assert p.rate == 0.0 and p.eta_s is None and p.eta() == "?"
    clock.now += 10
    p.add(100)
    assert p.rate == 10.0  # 100 in 10 s, not 500
    assert p.eta_s == 50.0 and p.eta() == "0:00:50"
    assert p.text() == "100/600 images (10.0/s, ETA 0:00:50)"
    p.add(500)
    assert p.eta_s == 0.0 and p.eta() == "0:00:00"


def test_restart_starts_the_clock_from_what_is_done_then():
    clock = Clock()
    p = Progress(100, 0, clock=clock)
    clock.now += 60  # loading the workers
    p.add(10)
    assert p.restart() == clock.now and p.rate == 0.0
    clock.now += 2
    p.add(10)
    assert p.rate == 5.0 and p.eta_s == 16.0


def test_lines_are_rate_limited_and_the_last_is_given_once():
    clock = Clock()
    p = Progress(3, every_s=5.0, clock=clock)
    assert p.due()  # the first line at once
    assert not p.due()
    clock.now += 5
    p.add()
    assert p.due() and not p.due()
    p.add(2)
    assert p.due(force=True)  # the last line, forced before its time
    clock.now += 60
    assert not p.due() and not p.due(force=True)


def test_a_forced_line_is_the_last_even_before_everything_is_done():
    p = Progress(10, every_s=0.0, clock=Clock())
    assert p.due(force=True) and not p.due()


def test_laps_parts_and_pending():
    clock = Clock()
    p = Progress(40, every_s=0.0, clock=clock, parts_total=4)
    clock.now += 3
    assert p.lap() == 3.0
    clock.now += 2
    p.add(10, parts=1)
    p.pending = 7
    assert p.lap() == 2.0 and (p.parts_done, p.done, p.pending) == (1, 10, 7)


def test_text_helpers():
    assert hms(3725.9) == "1:02:05" and hms(-3) == "0:00:00"
    assert eta_text(0, 0.0) == "0:00:00" and eta_text(5, 0.0) == "?" and eta_text(30, 2.0) == "0:00:15"
    assert progress_text(0, 10, 0.0) == "0/10 images (0.0/s, ETA ?)"
    assert progress_text(5, 10, 5.0, "rows") == "5/10 rows (1.0/s, ETA 0:00:05)"
