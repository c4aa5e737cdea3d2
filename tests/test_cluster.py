"""``mf serve --ray``: a real Ray cluster (head + two worker nodes, separate processes), the gateway, a client;
one worker node is killed while its character speaks (tests/cluster_scenario.py, run on loopback only)."""
from __future__ import annotations

import json
import os

import pytest

from tests import netns

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    why = netns.available()
    if why is not None:
        if os.environ.get("MFR_REQUIRE_NETNS"):
            pytest.fail(f"MFR_REQUIRE_NETNS is set but {why}")
        pytest.skip(f"Ray cluster test needs a loopback-only network namespace: {why}")
    out = tmp_path_factory.mktemp("cluster") / "seen.json"
    r = netns.isolated(["tests.cluster_scenario", str(out)], timeout=600, env={"OMP_NUM_THREADS": "1"})
    assert out.exists(), f"the scenario wrote nothing (rc {r.returncode}):\n{r.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert "error" not in result, result["error"]
    return result


def test_characters_are_spread_over_the_nodes(seen):
    assert sorted(sorted(c) for c in seen["placement"].values()) == [["a"], ["b"]]


def test_the_dead_nodes_line_ends_with_an_end_marker(seen):
    a = seen["first"]["a"]
    assert seen["first"]["killed"] and [c["seq"] for c in a] == list(range(len(a)))
    assert all(not c["eou"] for c in a[:-1]) and len(a) >= 4
    end = a[-1]
    assert end["eou"] and end["interrupted"] and end["frames"] == 0 and end["samples"] == 0
    assert end["pts"] == pytest.approx(a[-2]["pts"] + 0.16)  # where the next chunk would have started


def test_the_other_character_is_unaffected(seen):
    b = seen["first"]["b"]
    assert [c["seq"] for c in b] == list(range(len(b))) and len(b) > 10
    assert b[-1]["eou"] and not any(c["interrupted"] for c in b)
    assert all(c["samples"] == 2560 for c in b)


def test_the_next_say_is_placed_again_and_continues_the_stream(seen):
    a, again = seen["first"]["a"], seen["again"]
    assert again["utterance"] == seen["first"]["utterances"][0] + 1  # ids run on across nodes
    chunks = again["a"]
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert chunks[0]["pts"] == pytest.approx(a[-1]["pts"])  # the stream clock runs on where the marker left it
    assert chunks[-1]["eou"] and not chunks[-1]["interrupted"]
    assert seen["after"]["failovers"] == 1 and seen["after"]["characters"] == ["a", "b"]
    assert sorted(sum(seen["after"]["nodes"].values(), [])) == ["a", "b"]  # both on the surviving node
