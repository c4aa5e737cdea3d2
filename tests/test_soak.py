"""Ten minutes of continuous speech through a real mf serve: no lost or repeated chunk, flat memory."""
import pytest

from benchmarks.soak import run


@pytest.mark.slow
def test_ten_minute_soak_loses_nothing_and_memory_stays_flat():
    r = run(10, report=lambda line: None)
    assert r["lines"] > 50 and r["chunks"] > 1000
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["unended"] == 0 and r["bad_pts"] == 0
    assert r["one_eou_each"]
    assert r["warm_minute"] is not None and r["warm_minute"] < 10, r["rows"]  # the eSpeak cache filled in time
    assert r["rss_growth_mb"] < 5.0, r["rows"]


def test_short_soak_checks_every_utterance():
    r = run(10, report=lambda line: None, max_lines=6)  # six lines (a set_character among them): the same checks, no memory verdict
    assert r["lines"] == 6 and r["chunks"] > 0
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["unended"] == 0 and r["bad_pts"] == 0 and r["one_eou_each"]
