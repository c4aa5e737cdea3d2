"""CurveZMQ authentication and encryption for ``mf serve`` (ZeroMQ's own CURVE mechanism, via libzmq/libsodium).

Keys are ZeroMQ certificate files: ``NAME.key`` holds the public key (share it), ``NAME.key_secret`` the public
and secret keys (keep it; written readable by its owner only). ``mf keys`` makes a pair.

- The server has one pair; its sockets (control ROUTER and stream PUB) are CURVE servers with that secret key.
- Every client has its own pair. A folder of authorised clients' public ``.key`` files is the allow-list: the
  ZAP handler (pyzmq's authenticator thread) lets a connection in only if its client key is in that folder,
  so a client without an authorised key completes no handshake and gets nothing from either socket.
- A client needs the server's public key and its own secret pair.
- A client inside the server's own process (``mf serve --web``: the page's server side) gets a key pair made for
  that run, in a private temporary folder, admitted in memory only (``CurveServer.local_client``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

ZAP_DOMAIN = "mfruntime"


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # Z85, 40 characters
    secret: bytes | None  # Z85, or None for a public-only certificate


def write_keypair(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Make a CURVE key pair in ``folder``: (public NAME.key, secret NAME.key_secret). Refuses to overwrite."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"key name must be a plain file name such as 'server' or 'unity-editor', got {name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise ValueError(f"{p} exists already: pick another name or remove it first (keys are never overwritten)")
    made_public, made_secret = zmq.auth.create_certificates(folder, name)
    os.chmod(made_secret, 0o600)
    return Path(made_public), Path(made_secret)


def load_keys(path: str | Path, need_secret: bool) -> KeyPair:
    """Read a certificate file, with errors that say what to do."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"key file {path} not found (make one with: mf keys --out KEYDIR --name NAME)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError, zmq.ZMQError) as exc:
        raise ValueError(f"{path} is not a ZeroMQ key file ({exc}); make one with mf keys") from exc
    if not public or len(public) != 40:
        raise ValueError(f"{path} has no valid public key; make one with mf keys")
    if need_secret and not secret:
        raise ValueError(f"{path} holds only a public key; give the NAME.key_secret file")
    return KeyPair(public, secret)


def authorised_clients(folder: str | Path) -> list[Path]:
    """The public key files in the allow-list folder (at least one, each readable)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"authorised-clients folder {folder} not found: put the clients' public .key files there")
    keys = sorted(folder.glob("*.key"))
    if not keys:
        raise ValueError(f"{folder} holds no client public keys (*.key): copy each client's NAME.key there")
    for k in keys:
        load_keys(k, need_secret=False)
    return keys


class CurveServer:
    """Starts the ZAP authenticator on a context and makes sockets CURVE servers that only admit the clients
    whose public keys are in ``clients_folder``."""

    def __init__(self, context: zmq.Context, secret_file: str | Path, clients_folder: str | Path) -> None:
        self.secret_file = Path(secret_file)
        self.keys = load_keys(secret_file, need_secret=True)
        self.clients_folder = Path(clients_folder)
        # The allow-list: the folder's keys (read once, at start), plus keys of this process's own clients.
        self.allowed = {load_keys(k, need_secret=False).public for k in authorised_clients(self.clients_folder)}
        self._inproc: Path | None = None
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        """The ZAP authenticator's question: may this client (its Z85 public key) connect?"""
        return key in self.allowed

    def local_client(self) -> tuple[str, str]:
        """(the server's key file, a client secret key file) for a client inside this process (the web page's
        server side): a key pair made for this run in a private temporary folder, admitted without being put in
        the clients folder, and removed by ``stop``."""
        if self._inproc is None:
            self._inproc = Path(tempfile.mkdtemp(prefix="mf-curve-"))  # 0700
            public, _ = write_keypair(self._inproc, "local")
            self.allowed.add(load_keys(public, need_secret=False).public)
        return str(self.secret_file), str(self._inproc / "local.key_secret")

    def secure(self, sock: zmq.Socket) -> None:
        sock.zap_domain = ZAP_DOMAIN.encode()
        sock.curve_server = True
        sock.curve_publickey = self.keys.public
        sock.curve_secretkey = self.keys.secret

    def stop(self) -> None:
        self._auth.stop()
        if self._inproc is not None:
            shutil.rmtree(self._inproc, ignore_errors=True)
            self._inproc = None


def secure_client(sock: zmq.Socket, server_public_file: str | Path, client_secret_file: str | Path) -> None:
    """Make ``sock`` a CURVE client of the server whose public key file is given (call before connect)."""
    server = load_keys(server_public_file, need_secret=False)
    me = load_keys(client_secret_file, need_secret=True)
    sock.curve_serverkey = server.public
    sock.curve_publickey = me.public
    sock.curve_secretkey = me.secret
