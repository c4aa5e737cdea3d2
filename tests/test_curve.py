"""CURVE (CurveZMQ) on a real mf serve over loopback: only authorised client keys get anything from either socket."""
import time

import pytest

from mfruntime.runtime.client import Client, Subscriber
from mfruntime.runtime.security import load_keys, write_keypair
from mfruntime.runtime.server import ServeConfig, Server


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    server = write_keypair(root / "server", "server")
    good = write_keypair(root / "clients", "studio")  # its public key sits in the authorised folder
    bad = write_keypair(root / "strangers", "stranger")
    return {"root": root, "server": server, "good": good, "bad": bad, "clients": root / "clients"}


@pytest.fixture(scope="module")
def curve_server(keys):
    cfg = ServeConfig(bind="tcp://127.0.0.1:*", device="cpu", backend="eager",
                      curve_secret=str(keys["server"][1]), curve_clients=str(keys["clients"]))
    srv = Server(cfg).start()
    yield srv
    srv.close()


def test_authorised_client_talks_and_receives_the_stream(curve_server, keys):
    pub, sec = str(keys["server"][0]), str(keys["good"][1])
    with Client(curve_server.control_address, timeout=30, server_key=pub, client_key=sec) as c, \
            Subscriber(curve_server.stream_address, ["default"], server_key=pub, client_key=sec) as sub:
        assert c.request("ping")["status"] == "ok"
        time.sleep(0.5)  # slow joiner: the subscription (after the CURVE handshake) reaches the publisher
        c.request("say", character="default", text="Only for friends.")
        chunks = list(sub.utterance())
    assert chunks and chunks[-1].header["eou"]


@pytest.mark.parametrize("who", ["stranger", "no-curve"])
def test_unauthorised_clients_get_nothing_from_either_socket(curve_server, keys, who):
    pub = str(keys["server"][0])
    kw = {"server_key": pub, "client_key": str(keys["bad"][1])} if who == "stranger" else {}
    with Client(curve_server.control_address, timeout=1.5, **kw) as c, \
            Subscriber(curve_server.stream_address, None, **kw) as sub, \
            Client(curve_server.control_address, timeout=30, server_key=pub, client_key=str(keys["good"][1])) as friend:
        with pytest.raises(TimeoutError):
            c.request("ping")
        friend.request("say", character="default", text="A secret line.")  # the stream is busy meanwhile
        with pytest.raises(TimeoutError):
            sub.recv(timeout=2.0)
        friend.request("interrupt", character="default")


def test_remote_binding_needs_keys_and_key_files_are_checked(keys, tmp_path):
    with pytest.raises(ValueError, match="needs CURVE keys"):
        ServeConfig(bind="tcp://0.0.0.0:5555", allow_remote=True)
    with pytest.raises(ValueError, match="pass --allow-remote"):
        ServeConfig(bind="tcp://0.0.0.0:5555", curve_secret=str(keys["server"][1]), curve_clients=str(keys["clients"]))
    ServeConfig(bind="tcp://0.0.0.0:5555", allow_remote=True, curve_secret=str(keys["server"][1]),
                curve_clients=str(keys["clients"]))  # accepted (not bound here)
    with pytest.raises(ValueError, match="needs both"):
        ServeConfig(curve_secret=str(keys["server"][1]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no client public keys"):
        Server(ServeConfig(bind="tcp://127.0.0.1:*", curve_secret=str(keys["server"][1]), curve_clients=str(empty)))
    with pytest.raises(ValueError, match="holds only a public key"):
        Server(ServeConfig(bind="tcp://127.0.0.1:*", curve_secret=str(keys["server"][0]), curve_clients=str(keys["clients"])))
    junk = tmp_path / "junk.key_secret"
    junk.write_text("not a key")
    with pytest.raises(ValueError, match="not a ZeroMQ key file|no valid public key"):
        load_keys(junk, need_secret=True)
    with pytest.raises(ValueError, match="exists already"):
        write_keypair(keys["root"] / "server", "server")
    assert oct(keys["server"][1].stat().st_mode & 0o777) == "0o600"


def test_the_web_layer_is_a_client_of_a_curve_server_with_a_key_made_for_the_run(curve_server, keys):
    """mf serve --web with CURVE: the page's server side gets a key pair made for this run (admitted in memory, never
    written to the clients folder), sends requests and receives the stream."""
    from pathlib import Path

    from mfruntime.runtime.web.config import WebConfig
    from mfruntime.runtime.web.server import WebServer

    before = sorted(p.name for p in keys["clients"].iterdir())
    server_key, client_key = curve_server.local_client_keys()
    assert Path(client_key).is_file() and Path(client_key).parent != keys["clients"]
    assert curve_server.local_client_keys() == (server_key, client_key)  # one pair per run
    web = WebServer(WebConfig("http://127.0.0.1:0"), curve_server.control_address, curve_server.stream_address,
                    keys=(server_key, client_key)).start()
    try:
        assert web.request("ping")["status"] == "ok"
        time.sleep(0.5)  # slow joiner
        web.request("say", character="default", text="Hello, browsers.")
        deadline = time.monotonic() + 60
        while web.stream_messages == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert web.stream_messages > 0
    finally:
        web.close()
    assert sorted(p.name for p in keys["clients"].iterdir()) == before  # nothing written to the allow-list
