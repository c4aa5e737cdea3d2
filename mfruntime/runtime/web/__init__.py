"""``mf serve --web``: the characters in a browser over WebRTC (server.py; docs/WEB.md). Needs ``aiortc``
(``pip install 'mfruntime[web]'``, or make setup)."""
