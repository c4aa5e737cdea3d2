"""The Ray side of the gateway: which nodes can run characters, and a :class:`~.node.NodeServer` actor on each.

A node runs characters when Ray gives it at least one CPU (give a head node ``--num-cpus 0`` to keep it free of
characters, as KubeRay setups usually do). Each actor is pinned to its node (node affinity, not soft) and never
restarted by Ray: when its node dies the gateway places the characters again itself (gateway.py). Actors take
no Ray CPU, so they do not block other Ray work from being scheduled; they use the node's cores for their
chunks like ``mf serve`` does.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mfruntime.errors import UserFacingError

log = logging.getLogger(__name__)


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``) as a driver."""
    try:
        import ray
    except ImportError as exc:
        raise UserFacingError("mf serve --ray needs Ray: pip install 'ray==2.60.0' (or make setup)") from exc
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserFacingError(f"cannot join the Ray cluster at {address!r} ({exc}); start it with `ray start --head` "
                              "or pass its address (ray status prints it)") from exc


def usable_nodes() -> dict[str, tuple[str, int]]:
    """Alive nodes with at least one CPU: node id → (its address, its CPUs)."""
    import ray

    return {n["NodeID"]: (n["NodeManagerAddress"], int(n["Resources"]["CPU"])) for n in ray.nodes()
            if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0}


@dataclass
class Starting:
    """A node server being started: its actor and the pending reply with its addresses."""

    node_id: str
    actor: Any
    ready: Any  # ObjectRef of NodeServer.addresses()
    serving: Any = None  # ObjectRef of NodeServer.serve(): done when the server stopped


def start_node_server(node_id: str, host: str, cpus: int, serve: dict, gateway_key: str) -> Starting:
    """Create the node's :class:`~.node.NodeServer` actor (asynchronously: wait on ``Starting.ready``)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from mfruntime.runtime.cluster.node import NodeServer

    actor_cls = ray.remote(NodeServer).options(
        num_cpus=0, max_restarts=0, max_concurrency=4,  # serve() runs the engine; load(), addresses() answer meanwhile
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        # Ray would set OMP_NUM_THREADS to the actor's reserved CPUs (none: 1 thread); the node's cores instead, and
        # the server's thread setting ("auto") uses what other work leaves free.
        runtime_env={"env_vars": {"OMP_NUM_THREADS": str(max(1, cpus))}})
    actor = actor_cls.remote(serve, gateway_key, host)
    serving = actor.serve.remote()  # runs until the server stops: its engine's thread
    return Starting(node_id, actor, actor.addresses.remote(), serving=serving)


@dataclass
class Health:
    """Liveness of one node server: one ``load()`` call out at a time; a node is dead when the call fails
    (its actor or node died) or takes longer than ``timeout``."""

    actor: Any
    timeout: float
    ref: Any = None
    sent: float = 0.0
    load: dict = field(default_factory=dict)

    def check(self, now: float) -> bool:
        """Poll without blocking; False once the node is dead."""
        import ray

        if self.ref is None:
            self.ref, self.sent = self.actor.load.remote(), now
            return True
        done, _ = ray.wait([self.ref], timeout=0)
        if not done:
            return now - self.sent < self.timeout
        try:
            self.load = ray.get(self.ref)
        except Exception as exc:  # RayActorError, ActorDiedError, node died, …
            log.warning("node server unreachable: %s", type(exc).__name__)
            return False
        self.ref = None
        return True
