"""Grading on a Dask cluster: the executor behind `batch --scheduler`.

`grade_all` runs on any `concurrent.futures.Executor`; this module makes one from Dask
(`distributed.Client(...).get_executor()`), on a cluster that already runs (`ADDRESS`, e.g.
`tcp://head:8786`) or on a `LocalCluster` started here and closed afterwards (`local`). Nothing
else changes: the workers grade and write the same files as a process pool, and `grade_all`
checks that each worker's grader is the one that started the batch.

Every grading forks a sandbox and, as root, changes uid, so a local cluster runs one worker
*process* per job with one thread each (never threads sharing a process). It listens on
127.0.0.1 only, with TLS and credentials made for this run alone: a Dask worker runs whatever
task it is sent, as the user it runs as, so nobody else on the machine may send it one.

Dask is optional (`pip install -e ".[dask]"`): it is imported only when asked for.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from autograder.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["LOCAL", "dask_executor"]

LOCAL = "local"
"""The `--scheduler` value that starts a cluster on this machine."""


def _require(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"batch --scheduler needs Dask, which is not installed here ({error}): run "
            'pip install -e ".[dask]" in the grader\'s folder, then try again (without '
            "--scheduler, batch grades in a process pool)."
        ) from None


@contextmanager
def dask_executor(
    scheduler: str, *, workers: int, wait_seconds: float = 60.0
) -> Iterator[Executor]:
    """An executor on the Dask cluster `scheduler` names, closed on exit.

    `scheduler` is the address of a running scheduler (its workers decide how many gradings
    run at once), or `LOCAL` for a `LocalCluster` of `workers` single-threaded worker
    processes on 127.0.0.1. Waits up to `wait_seconds` for the cluster's first worker. Dask's
    own configuration applies (for example the connect timeout, or TLS credentials for a
    `tls://` scheduler)."""
    _require("distributed")
    from distributed import Client, LocalCluster
    from distributed.exceptions import WorkerStartTimeoutError

    with ExitStack() as stack:
        if scheduler == LOCAL:
            _require("cryptography")  # for the run's own TLS credentials
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    security=True,
                )
            )
            client = Client(cluster, security=cluster.security, set_as_default=False)
        else:
            client = _connect(scheduler)
        stack.enter_context(client)
        try:
            client.wait_for_workers(1, timeout=wait_seconds)
        except WorkerStartTimeoutError:
            raise ConfigError(
                f"The Dask scheduler at {scheduler} has no worker after {wait_seconds:g} s: "
                f"start one (dask worker {scheduler}) and try again."
            ) from None
        threaded = sorted(address for address, n in client.nthreads().items() if n != 1)
        if threaded:
            raise ConfigError(
                f"The Dask worker{'s' if len(threaded) > 1 else ''} {', '.join(threaded)} "
                f"of {scheduler} run{'' if len(threaded) > 1 else 's'} several threads, but "
                "each grading needs a worker process of its own (it forks a sandbox and, as "
                "root, changes uid): start workers with one thread each (dask worker "
                "ADDRESS --nthreads 1 --nworkers N) and try again."
            )
        client.register_plugin(_quiet_worker(), name="autograder-quiet-random")
        executor = client.get_executor(pure=False)  # every grading runs, and writes its files
        try:
            yield executor
        finally:
            executor.shutdown(wait=False)


def _quiet_worker() -> object:
    """A worker plugin that silences a false alarm of Hypothesis's on Dask workers.

    Hypothesis warns when the global `random` state changes while it draws an example, in case
    a strategy uses it; on a Dask worker, the worker's own threads use `random` meanwhile. The
    grader draws only from its own seeded generators, so the warning says nothing about the
    grade (the tests compare every result with a process pool's)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietRandom(WorkerPlugin):  # type: ignore[misc]
        def setup(self, worker: object) -> None:
            import warnings

            from hypothesis.errors import HypothesisDeprecationWarning

            warnings.filterwarnings(
                "ignore",
                message="Do not use the `random` module inside strategies",
                category=HypothesisDeprecationWarning,
            )

    return QuietRandom()


def _connect(address: str) -> Client:
    """A client of the scheduler at `address`; a `ConfigError` if there is none to reach.

    Reaches it once on a connection of its own first: a `Client` that fails to connect
    leaves a half-made client behind, whose clean-up prints a traceback at exit."""
    from distributed import Client, Security
    from distributed.comm import connect, resolve_address

    async def reach() -> None:
        comm = await connect(address, **Security().get_connection_args("client"))
        await comm.close()

    try:
        address = resolve_address(address)
        asyncio.run(reach())
    except ValueError as error:
        raise ConfigError(
            f"--scheduler {address!r} is not a Dask scheduler's address ({error}): give "
            f"tcp://HOST:PORT (or tls://HOST:PORT), or {LOCAL} to start a cluster here."
        ) from None
    except (OSError, TypeError) as error:  # TypeError: tls:// without TLS credentials
        raise ConfigError(
            f"Could not reach the Dask scheduler at {address} ({error}): check the address "
            f"and that the scheduler runs (and, for tls://, Dask's TLS configuration), or use "
            f"--scheduler {LOCAL}."
        ) from None
    return Client(address, set_as_default=False)
