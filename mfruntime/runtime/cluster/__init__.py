"""Characters on a Ray cluster behind one ``mf serve`` address (``mf serve --ray ADDRESS``).

``node`` is what runs on each Ray node: an ordinary ``mf serve`` (runtime/server) inside a Ray actor pinned to
the node, reachable only by the gateway (CURVE keys made when the gateway starts). ``nodes`` starts and watches
those actors through Ray. ``gateway`` is the front: the same ZeroMQ control and stream sockets as ``mf serve``
(docs/PROTOCOL.md, unchanged for clients), which places each character on a node by load, forwards its requests,
republishes its chunks, and places a node's characters again when the node dies. docs/RUNTIME.md ("Many
machines: Ray") has the deployment.
"""
