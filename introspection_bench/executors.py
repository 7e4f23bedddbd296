"""Where trials are decoded: in this process (the `Decoder`), or on Ray actors (`--executor ray`).

`RayDecoder` has the `Decoder`'s `generate(requests, on_complete)` contract, so the session does
not know where its rows run. Requests are cut into groups of `group_size` consecutive trials
(the session orders them by protocol, condition and cell, so a group shares its prompt) and
sent to actors that each load the model once. Each group's completions come back as soon as
the group is done and go to `on_complete` (the session writes them to disk at once). An actor
that dies or is lost (node failure, out-of-memory kill) is replaced and its group resent; a
finished group is never sent again. Ray is optional: this module imports it only when a
`RayDecoder` is built.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from introspection_bench.errors import ConfigError, IntrospectionBenchError

if TYPE_CHECKING:  # torch is imported only where a model is loaded
    from introspection_bench.generation import Completion, GenerationRequest

#: Trials per Ray task: big enough for a useful batch, small enough to lose little on a failure.
RAY_GROUP_TRIALS = 8
#: How often one group may be resent after its actor died before the run gives up.
MAX_GROUP_RETRIES = 3


class ExecutorError(IntrospectionBenchError):
    """An executor cannot start, or a group failed on every retry."""


@dataclass(frozen=True)
class ExecutorSpec:
    """`--executor`: `local` (this process) or `ray[:ADDRESS]`."""

    kind: str
    address: str | None = None
    """Ray cluster address (`ray://host:10001`, `host:6379`, `auto`); None starts a local one
    (or joins the cluster `RAY_ADDRESS` names)."""

    @classmethod
    def parse(cls, text: str | None) -> ExecutorSpec:
        """Parse `local`, `ray` or `ray:ADDRESS`.

        Raises:
            ConfigError: For another value, or `ray` when the ray package is missing.

        """
        if text in (None, "", "local"):
            return cls("local")
        kind, _, address = str(text).partition(":")
        if kind != "ray":
            raise ConfigError(
                f"unknown --executor {text!r}; use local, ray (a local Ray cluster or "
                "RAY_ADDRESS) or ray:ADDRESS (e.g. ray:ray://head:10001)"
            )
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ConfigError(
                "--executor ray needs the ray package: pip install 'introspection-bench[ray]'"
            )
        return cls("ray", address or None)


@dataclass(frozen=True)
class ModelRecipe:
    """What an actor needs to load the run's model itself."""

    spec: str
    device: str
    dtype: str
    batch_size: int | None


class _GenerationActor:
    """One Ray actor: loads the model once, decodes the groups it is sent."""

    def __init__(self, recipe: ModelRecipe) -> None:
        from introspection_bench.generation import Decoder
        from introspection_bench.models import load_model

        self.lm = load_model(recipe.spec, device=recipe.device, dtype=recipe.dtype)
        self.decoder = Decoder(self.lm, recipe.batch_size)

    def fingerprint(self) -> str:
        """The loaded model's fingerprint (the driver checks it equals its own)."""
        return str(self.lm.fingerprint)

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        import os

        return os.getpid()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Decode one group."""
        return self.decoder.generate(list(requests))


class RayDecoder:
    """Decodes trial groups on Ray actors (one model each); same contract as `Decoder`."""

    def __init__(
        self,
        recipe: ModelRecipe,
        *,
        address: str | None = None,
        n_actors: int | None = None,
        group_size: int = RAY_GROUP_TRIALS,
        fingerprint: str | None = None,
        ray_init: dict[str, Any] | None = None,
    ) -> None:
        """Connect to (or start) Ray and start the actors.

        Args:
            recipe: The model the actors load.
            address: Ray cluster address; None joins `RAY_ADDRESS` or starts a local cluster.
            n_actors: Actors to start (default: one per GPU on CUDA, else one per CPU).
            group_size: Trials per task.
            fingerprint: The driver's model fingerprint; an actor with another model is refused.
            ray_init: Extra `ray.init` keywords (e.g. `num_cpus` of a local cluster).

        Raises:
            ExecutorError: When an actor loads another model than the driver's.

        """
        import ray

        if not ray.is_initialized():
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                **(ray_init or {}),
            )
        self.ray = ray
        self.recipe, self.group_size = recipe, group_size
        on_gpu = recipe.device.startswith("cuda")
        resources = ray.cluster_resources()
        count = n_actors or max(1, int(resources.get("GPU" if on_gpu else "CPU", 1)))
        self._actor_class = ray.remote(num_cpus=0 if on_gpu else 1, num_gpus=1 if on_gpu else 0)(
            _GenerationActor
        )
        self.actors = [self._start_actor() for _ in range(count)]
        self.restarts = 0
        """Actors replaced after they died."""
        self.resent = 0
        """Groups sent again after their actor died."""
        if fingerprint is not None:
            found = ray.get([actor.fingerprint.remote() for actor in self.actors])
            if any(f != fingerprint for f in found):
                raise ExecutorError(
                    f"a Ray actor loaded {recipe.spec} with another fingerprint than the driver; "
                    "give every node the same model files"
                )

    def _start_actor(self) -> Any:
        return self._actor_class.remote(self.recipe)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_complete: Callable[[Completion], None] | None = None,
    ) -> list[Completion]:
        """Decode every request on the actors; results in request order.

        Raises:
            ExecutorError: When a group failed `MAX_GROUP_RETRIES` times.

        """
        ray = self.ray
        groups = deque(
            (start, list(requests[start : start + self.group_size]), 0)
            for start in range(0, len(requests), self.group_size)
        )
        done: dict[str, Completion] = {}
        idle = list(range(len(self.actors)))
        running: dict[Any, tuple[int, tuple[int, list[GenerationRequest], int]]] = {}
        while groups or running:
            while groups and idle:
                slot = idle.pop()
                group = groups.popleft()
                running[self.actors[slot].generate.remote(group[1])] = (slot, group)
            ready, _ = ray.wait(list(running), num_returns=1)
            slot, group = running.pop(ready[0])
            try:
                completions = ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as error:
                self._replace(slot)
                if group[2] + 1 > MAX_GROUP_RETRIES:
                    raise ExecutorError(
                        f"trials {group[1][0].trial_id} .. {group[1][-1].trial_id} failed on "
                        f"{MAX_GROUP_RETRIES + 1} Ray actors (last: {error}); check the workers' "
                        "logs (memory, model files)"
                    ) from error
                self.resent += 1
                groups.appendleft((group[0], group[1], group[2] + 1))
                idle.append(slot)
                continue
            idle.append(slot)
            for completion in completions:
                done[completion.trial_id] = completion
                if on_complete is not None:
                    on_complete(completion)
        return [done[request.trial_id] for request in requests]

    def _replace(self, slot: int) -> None:
        self.ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = self._start_actor()
        self.restarts += 1

    def shutdown(self) -> None:
        """Stop the actors (the cluster itself stays up)."""
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors = []
