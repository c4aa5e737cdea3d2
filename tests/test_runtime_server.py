"""`mf serve` over real ZeroMQ sockets on loopback: round trip, characters, late joiners, bad clients."""
import io
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mfruntime import Session
from mfruntime.runtime.client import Client, ServerError, Subscriber
from mfruntime.runtime.protocol import MAX_REQUEST_BYTES, encode_request
from mfruntime.runtime.server import ServeConfig, Server

TEXT = "Hello there, nice to meet you."


@pytest.fixture(scope="module")
def server():
    # A fixed thread count: "auto" may change it between chunks, and results are then equal only up to rounding.
    # No admission: these tests run characters at once on a machine that may be too slow for them in real time
    # (admission is tested in test_deadlines.py).
    srv = Server(ServeConfig(bind="tcp://127.0.0.1:*", device="cpu", backend="eager", send_hwm=4, threads=2,
                             admission=False)).start()
    yield srv
    srv.close()


@pytest.fixture()
def client(server):
    with Client(server.control_address, timeout=30) as c:
        yield c


def _subscribe(server, characters, **kw):
    sub = Subscriber(server.stream_address, characters, **kw)
    time.sleep(0.3)  # ZeroMQ slow joiner: let the subscription reach the publisher
    return sub


def test_round_trip_equals_what_session_yields(server, client):
    with _subscribe(server, ["default"]) as sub:
        reply = client.request("say", character="default", text=TEXT)
        got = list(sub.utterance(reply["utterance"]))
    assert [g.header["seq"] for g in got] == list(range(len(got)))
    assert all(g.header["utterance"] == reply["utterance"] for g in got) and got[-1].header["eou"]
    local = list(Session(device="cpu", backend="eager", seed=0, threads=2).say(TEXT))  # same model, seed and character
    assert len(local) == len(got)
    assert np.array_equal(np.concatenate([g.frames for g in got]), np.concatenate([c.frames for c in local]))
    assert np.array_equal(np.concatenate([g.pcm for g in got]), np.concatenate([c.pcm for c in local]))
    assert np.array_equal(np.concatenate([g.rig for g in got]), np.concatenate([c.rig for c in local]))
    assert [g.header["pts"] for g in got] == pytest.approx([c.pts for c in local])
    assert [g.header["steps"] for g in got] == [c.steps for c in local] and local[0].steps == 4  # what made each chunk


def test_rig_only_mode_streams_rig_frames_without_pixels(server, client):
    """set_outputs video=false: the same stream's PCM and rig frames, an empty video part; and back."""
    from mfruntime.rig import CONTROLS, RIG_VERSION

    client.request("set_character", character="rig1", face_seed=0)
    with _subscribe(server, ["rig1"]) as sub:
        reply = client.request("set_outputs", character="rig1", video=False)
        assert reply["video"] is False and reply["rig"] is True
        state = client.request("state", character="rig1")
        assert state["video"] is False and state["rig"] is True and state["has_rig"] is True
        got = list(sub.utterance(client.request("say", character="rig1", text="Rig only.")["utterance"]))
        assert all(g.frames is None and not g.header["video"] and g.header["frames"] == 4 for g in got)
        assert all(g.rig.shape == (4, len(CONTROLS)) and g.header["rig_version"] == RIG_VERSION for g in got)
        client.request("set_outputs", character="rig1", video=True, rig=False)
        again = list(sub.utterance(client.request("say", character="rig1", text="Rig only.")["utterance"]))
        assert all(g.frames.shape == (4, 64, 64, 3) and g.rig is None and g.header["controls"] == 0 for g in again)
    pong = client.request("ping")
    assert pong["rig"] == {"version": RIG_VERSION, "controls": list(CONTROLS)}
    with pytest.raises(ServerError, match="must be bool"):
        client.request("set_outputs", character="rig1", video="no")


def test_ping_stats_and_late_joiner_state(server, client):
    pong = client.request("ping")
    assert pong["protocol"] == 3 and "default" in pong["characters"] and pong["stream"] == server.stream_address
    state = client.request("state", character="default")
    assert state["width"] == 64 and state["fps"] == 25 and state["sample_rate"] == 16000 and not state["speaking"]
    stats = client.request("stats")
    assert stats["server"]["published"] >= 1 and stats["characters"]["default"]["backend"] == "eager"


def test_two_characters_stream_at_once_on_their_own_topics(server, client):
    img = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    assert client.request("set_character", character="npc2", image=img.tobytes(), width=80, height=48)["width"] == 64
    png = io.BytesIO()
    Image.fromarray(img).save(png, format="PNG")
    client.request("set_character", character="npc3", image=png.getvalue(), voice="en-gb-x-rp+f2")
    with _subscribe(server, ["npc2"]) as s2, _subscribe(server, ["npc3"]) as s3:
        client.request("say", character="npc2", text="I am the second one.")
        client.request("say", character="npc3", text="And I am the third.")
        a, b = list(s2.utterance()), list(s3.utterance())
    assert {g.header["character"] for g in a} == {"npc2"} and {g.header["character"] for g in b} == {"npc3"}
    assert a[-1].header["eou"] and b[-1].header["eou"]
    with pytest.raises(ServerError, match="no character 'ghost'"):
        client.request("say", character="ghost", text="Boo.")


def test_set_character_draws_a_portrait_when_asked_and_says_so(server, client):
    """set_character chooses the renderer as Session does ("auto": a large image is animated as a portrait) unless
    the request names one; the reply and the stream carry the frame size."""
    from mfruntime.data.render import FaceRenderer, FaceState, Identity

    face = np.pad(FaceRenderer(Identity.from_seed(5), 256).render(FaceState()), ((32, 32), (32, 32), (0, 0)), mode="edge")
    png = io.BytesIO()
    Image.fromarray(face).save(png, format="PNG")
    r = client.request("set_character", character="host", image=png.getvalue(), renderer="model")
    assert (r["renderer"], r["width"], r["height"]) == ("model", 64, 64)
    assert client.request("set_character", character="host", image=png.getvalue())["renderer"] == "portrait"
    r = client.request("set_character", character="host", image=png.getvalue(), size=288)
    assert (r["renderer"], r["width"], r["height"]) == ("portrait", 288, 288)
    with _subscribe(server, ["host"]) as sub:
        client.request("say", character="host", text="Good evening.")
        chunks = list(sub.utterance())
    assert {(c.header["width"], c.header["height"]) for c in chunks} == {(288, 288)}
    assert chunks[0].frames.shape[1:] == (288, 288, 3)
    assert client.request("state", character="host")["width"] == 288
    for fields, message in [({"renderer": "3d"}, "renderer must be one of"), ({"size": 2000, "renderer": "portrait"},
                                                                            "portrait size must be 256–512")]:
        with pytest.raises(ServerError, match=message):
            client.request("set_character", character="host", image=png.getvalue(), **fields)
    with pytest.raises(ServerError, match="go with an 'image'"):
        client.request("set_character", character="host", face_seed=1, renderer="auto")
    with pytest.raises(ServerError, match="voice"):  # checked before anything changes
        client.request("set_character", character="host", image=png.getvalue(), renderer="model", voice="xx-nowhere")
    assert client.request("state", character="host")["width"] == 288  # refused requests changed nothing


def test_interrupt_and_superseded_utterances_end_with_eou(server, client):
    with _subscribe(server, ["default"]) as sub:
        client.request("say", character="default", text="A long line that will be interrupted very soon after it starts.")
        first = sub.recv(30)
        assert client.request("interrupt", character="default")["utterance"] == first.header["utterance"]
        rest = list(sub.utterance())
        assert len(rest) <= 3 and rest[-1].header["eou"] and rest[-1].header["interrupted"]
        # A new say while one is running: the old one ends (possibly with an empty end marker).
        u1 = client.request("say", character="default", text="The first of two long lines, cut short by the second.")["utterance"]
        sub.recv(30)
        u2 = client.request("say", character="default", text="Second.")["utterance"]
        ends = {}
        while u2 not in ends:
            m = sub.recv(30)
            if m.header["eou"]:
                ends[m.header["utterance"]] = m.header
        assert ends[u1]["interrupted"] and not ends[u2]["interrupted"]


def test_bad_requests_get_error_replies(server, client):
    for fields, message in [({"op": "say", "character": "default"}, "needs the field 'text'"),
                            ({"op": "say", "character": "default", "text": ""}, "empty"),
                            ({"op": "say", "character": "default", "text": "x" * 3000}, "characters"),
                            ({"op": "say", "character": "default", "text": 5}, "must be str"),
                            ({"op": "say", "character": "default", "text": "Hello\x00world"}, "U\\+0000 \\(NUL\\) at position 5"),
                            ({"op": "set_steps", "character": "default", "steps": 99}, "steps must be"),
                            ({"op": "fly"}, "unknown op"),
                            ({"op": "ping", "v": 7}, "version"),
                            ({"op": "drive", "character": "default", "pcm": b"abc", "sample_rate": 16000}, "multiple of 4"),
                            ({"op": "set_character", "character": "x", "image": b"nope"}, "not a readable PNG"),
                            ({"op": "set_character", "character": "x", "image": b"\0" * 5, "width": 16, "height": 16}, "16×16×3"),
                            ({"op": "set_character", "character": "x"}, "exactly one of 'image'"),
                            ({"op": "set_character", "character": "default", "voice": "en-us+f2"}, "exactly one of"),
                            ({"op": "set_character", "character": "x", "image": b"\0" * 12, "face_seed": 3}, "not both"),
                            ({"op": "set_character", "character": "x", "image": b"\0" * 12, "width": -2, "height": 2},
                             "width must be a whole number of pixels, at least 16, got -2")]:
        op = fields.pop("op")
        with pytest.raises(ServerError, match=message):
            client.request(op, **fields)
    assert client.request("set_steps", character="default", steps=2)["steps"] == 2
    client.request("set_steps", character="default", steps=4)


def test_unreadable_image_error_shows_the_bytes_not_a_python_object(server, client):
    with pytest.raises(ServerError) as err:
        client.request("set_character", character="x", image=b"GIF8junk")
    assert "8 image bytes (starting 47 49 46 38 6a 75 6e 6b)" in str(err.value) and "object at 0x" not in str(err.value)
    assert "x" not in client.request("ping")["characters"]  # nothing was half-made


def test_a_request_split_over_several_frames_gets_an_error_not_a_guess(server, client):
    first, second = (msgpack.packb({"op": "say", "character": "default", "text": t}) for t in ("one", "two"))
    client.sock.send_multipart([first, second])
    assert client.sock.poll(30_000)
    reply = msgpack.unpackb(client.sock.recv(), raw=False)
    assert reply["status"] == "error" and "one message frame" in reply["error"]
    assert client.request("ping")["status"] == "ok"


def test_oversized_messages_leave_the_server_serving(server, client):
    client.sock.send(b"\x92" + b"\0" * (MAX_REQUEST_BYTES + 10))
    reply = msgpack.unpackb(client.sock.recv(), raw=False)
    assert reply["status"] == "error" and "more than" in reply["error"]
    # Above the socket limit ZeroMQ drops that connection; other clients are unaffected.
    with Client(server.control_address, timeout=30) as greedy:
        greedy.sock.send(b"\0" * (64 * 1024 * 1024 + 1))
    assert client.request("ping")["status"] == "ok"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(
    st.binary(max_size=256),
    st.dictionaries(st.sampled_from(["op", "v", "id", "character", "text", "steps", "pcm", "image", "width"]),
                    st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=20),
                              st.binary(max_size=16), st.lists(st.integers(-2**63, 2**63 - 1), max_size=3)), max_size=6)
    .map(lambda d: msgpack.packb(d, use_bin_type=True))))
def test_fuzzed_requests_always_get_a_reply(client, payload):
    client.sock.send(payload)
    assert client.sock.poll(30_000), "the server stopped answering"
    reply = msgpack.unpackb(client.sock.recv(), raw=False)
    assert reply["status"] in ("ok", "error")
    if reply["status"] == "ok" and reply.get("utterance"):
        client.request("interrupt", character="default")


def test_a_subscriber_that_stops_reading_does_not_stall_generation(server, client):
    ctx = zmq.Context.instance()
    stuck = ctx.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(server.stream_address)  # never read from
    try:
        with _subscribe(server, ["default"]) as sub:
            for line in ("First of three lines for a reader that never reads.", "Second line.", "Third and last line."):
                uid = client.request("say", character="default", text=line)["utterance"]
                got = list(sub.utterance(uid, timeout=60))
                assert [g.header["seq"] for g in got] == list(range(len(got)))  # the live reader misses nothing
        state = client.request("state", character="default")
        assert not state["speaking"] and state["next_seq"] == 0  # idle: the next chunk is seq 0 of a new utterance
        assert state["clock"] * state["sample_rate"] == round(state["clock"] * state["sample_rate"])
    finally:
        stuck.close(0)


def test_a_client_that_vanishes_mid_request_is_harmless(server):
    ctx = zmq.Context.instance()
    for _ in range(3):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(server.control_address)
        s.send(encode_request("stats", id=1))
        s.close(0)
    with Client(server.control_address, timeout=30) as c:
        assert c.request("ping")["status"] == "ok"


def test_remote_binding_must_be_asked_for():
    with pytest.raises(ValueError, match="--allow-remote"):
        ServeConfig(bind="tcp://0.0.0.0:5555")
    with pytest.raises(ValueError, match="look like"):
        ServeConfig(bind="localhost:5555")


def test_a_taken_port_is_a_clear_error(server):
    with pytest.raises(Exception, match="cannot bind"):
        Server(ServeConfig(bind=server.control_address, device="cpu", backend="eager")).start()


def test_closing_the_server_ends_running_utterances_for_subscribers():
    srv = Server(ServeConfig(bind="tcp://127.0.0.1:*", device="cpu", backend="eager")).start()
    try:
        with Client(srv.control_address, timeout=30) as c, _subscribe(srv, ["default"]) as sub:
            uid = c.request("say", character="default", text="A long line that is still running when the server stops.")["utterance"]
            sub.recv(30)
            srv.stop()
            rest = list(sub.utterance(uid, timeout=30))
            assert rest[-1].header["eou"] and rest[-1].header["interrupted"]
    finally:
        srv.close()


def test_characters_take_turns_chunk_by_chunk(server, client):
    for cid in ("left", "right"):
        client.request("set_character", character=cid, face_seed=len(cid))
    with _subscribe(server, ["left", "right"]) as sub:
        ua = client.request("say", character="left", text="The left one speaks a fairly long line right now.")["utterance"]
        ub = client.request("say", character="right", text="And the right one speaks at the same time.")["utterance"]
        order, ended = [], set()
        while len(ended) < 2:
            m = sub.recv(60)
            h = m.header
            if (h["character"], h["utterance"]) in (("left", ua), ("right", ub)):
                order.append(h["character"])
                if h["eou"]:
                    ended.add(h["character"])
    # Round robin: the right one starts long before the left one is done.
    assert order.index("right") < len(order) - order[::-1].index("left") - 5


def test_requests_for_a_character_being_set_up_wait_in_order(server, client):
    """set_character runs on the preparation thread; a say sent right behind it (without waiting for the reply)
    follows it instead of failing with 'no character', and the character then speaks."""
    with _subscribe(server, ["late1"]) as sub:
        client.sock.send(encode_request("set_character", id="mk", character="late1", face_seed=4))
        client.sock.send(encode_request("say", id="sp", character="late1", text="Right behind you."))
        replies = {}
        while len(replies) < 2:
            assert client.sock.poll(30_000)
            r = msgpack.unpackb(client.sock.recv(), raw=False)
            replies[r["id"]] = r
        assert replies["mk"]["status"] == "ok" and replies["sp"]["status"] == "ok", replies
        chunks = list(sub.utterance())
    assert chunks[-1].header["eou"] and not chunks[-1].header["interrupted"]


def test_say_replies_before_espeak_and_unknown_voices_fail_at_once(server, client):
    uid = client.request("say", character="default", text="A sentence nobody said before, number 8817.")["utterance"]
    assert client.request("state", character="default")["utterance"] == uid
    with pytest.raises(ServerError, match="unknown voice 'zz-nowhere\\+m1'"):
        client.request("say", character="default", text="Hi.", voice="zz-nowhere+m1")
    assert client.request("state", character="default")["utterance"] == uid  # the bad request ended nothing
    client.request("interrupt", character="default")


def test_a_listening_character_streams_idle_chunks_between_lines(server, client):
    """op idle on: whenever nothing is queued the character listens — silent chunks with the idle rig, paced to real
    time (never far ahead) — a say takes over at once, and listening resumes after the line; off stops it."""
    client.request("set_character", character="listener", face_seed=1)
    with _subscribe(server, ["listener"]) as sub:
        assert client.request("idle", character="listener", on=True)["idle"] is True
        t0 = time.perf_counter()
        got = [sub.recv(30) for _ in range(8)]
        waited = time.perf_counter() - t0
        u = got[0].header["utterance"]
        st = client.request("state", character="listener")
        assert st["idle"] is True and st["idling"] is True
        assert all(g.header["utterance"] == u and not g.pcm.any() and g.rig.shape == (4, g.header["controls"])
                   for g in got)
        assert waited >= (8 - 1 - 3) * 0.16 - 0.05  # paced: idle chunks are not made far ahead of real time
        said = client.request("say", character="listener", text="Hello.")["utterance"]
        ends, after = {}, None
        while after is None:
            m = sub.recv(30)
            if m.header["eou"]:
                ends[m.header["utterance"]] = m.header
            elif said in ends:
                after = m  # listening again after the line
        assert ends[u]["interrupted"] and not ends[said]["interrupted"]
        assert after.header["utterance"] > said and not after.pcm.any()
        assert client.request("idle", character="listener", on=False)["idle"] is False
        while not sub.recv(30).header["eou"]:
            pass
        deadline = time.monotonic() + 5  # the end marker may be sent a moment before the engine moves on
        while client.request("state", character="listener")["idling"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.request("state", character="listener")["idling"] is False
    with pytest.raises(ServerError, match="must be bool"):
        client.request("idle", character="listener", on=1)
    with pytest.raises(ServerError, match="needs the field 'on'"):
        client.request("idle", character="listener")


def test_characters_speaking_at_once_are_batched_and_get_their_solo_chunks(server, client):
    """Two characters' lines made in one batch per chunk equal what each Session makes alone (float rounding)."""
    from mfruntime.runtime.character import default_character

    lines = {"duo-a": ("A batch of two starts here.", 5), "duo-b": ("And this one joins it.", 9)}
    for cid, (_, seed) in lines.items():
        client.request("set_character", character=cid, face_seed=seed)
    before = client.request("stats")["server"]["batches"]
    with _subscribe(server, list(lines)) as sub:
        ids = {cid: client.request("say", character=cid, text=text)["utterance"] for cid, (text, _) in lines.items()}
        got = {cid: [] for cid in lines}
        while not all(g and g[-1].header["eou"] for g in got.values()):
            m = sub.recv(60)
            if ids.get(m.header["character"]) == m.header["utterance"]:
                got[m.header["character"]].append(m)
    after = client.request("stats")["server"]
    assert after["batched"] and after["batches"].get("2", 0) > before.get("2", 0)  # they did share forwards
    for cid, (text, seed) in lines.items():
        alone = list(Session(device="cpu", backend="eager", seed=0, threads=2,
                             character=default_character(64, seed)).say(text))
        assert len(alone) == len(got[cid])
        frames = np.concatenate([g.frames for g in got[cid]]).astype(int)
        assert np.abs(frames - np.concatenate([c.frames for c in alone])).max() <= 2
        # Rounding differences of a batched matmul carry on through the stream's cache (engine-level tests bound
        # the latents at 2e-4): a few samples of the speech move by up to ~2e-3 of full scale.
        np.testing.assert_allclose(np.concatenate([g.pcm for g in got[cid]]), np.concatenate([c.pcm for c in alone]),
                                   atol=5e-3)
