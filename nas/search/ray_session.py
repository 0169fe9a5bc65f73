"""Starting or joining Ray for a search, with its control plane closed to strangers by default.

Anyone who can reach an unauthenticated Ray's ports can run code as its user (the ShadowRay attacks,
CVE-2023-48022). So, with Ray 2.60:

- **A local search listens on loopback only.** Ray takes the loopback address as the node's IP when its
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` setting is off (it is meant to keep single-machine Ray off the network on
  laptops), and every server it starts (GCS, raylet, object manager, workers, the driver's own) then binds to
  ``127.0.0.1``; :func:`start_local` turns it off while Ray starts. Ray's own
  ``_node_ip_address="127.0.0.1"`` does not do this: Ray rewrites a loopback node address to the machine's IP.
- **Token authentication stays on.** A new local Ray turns it on when ``RAY_AUTH_MODE`` is unset and creates a
  token in ``~/.ray/auth_token`` if there is none, readable by everyone; :func:`start_local` creates it first,
  readable by its owner only (a token file that exists is left as it is). A ``RAY_AUTH_MODE`` the user set is
  kept. Ray's one-line notice about it is hidden with the rest
  of its console output; :func:`describe` says it in our words.
- **Joining a cluster** (``--address``) needs that cluster's token in ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
  ``~/.ray/auth_token`` when the cluster uses tokens (``docs/cluster.md``); the node IP is left to Ray, since
  the cluster's other nodes must reach this driver.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
QUIET = dict(log_to_driver=False, logging_level="ERROR", include_dashboard=False)
"""ray.init's console settings for every search and bench: no worker logs, no dashboard, Ray's errors only."""


def token_path() -> Path:
    """Where this process's Ray reads its authentication token from (Ray's order: the variable, then the file)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def start_local(**init_kwargs: Any) -> None:
    """Start a Ray on this machine only: every port on loopback, token authentication on unless the user set
    ``RAY_AUTH_MODE``. ``init_kwargs`` go to ``ray.init`` (``num_cpus``, ``num_gpus``, ...) after :data:`QUIET`."""
    import ray
    from ray._private import ray_constants

    if os.environ.get("RAY_AUTH_MODE", "token").lower() == "token" and "RAY_AUTH_TOKEN" not in os.environ:
        _create_token(token_path())
    # Off while Ray starts its processes (they inherit it) and this one takes its node IP; back afterwards, so that
    # a `ray start` this process runs later is not refused as a multi-node cluster "on Windows or OSX".
    saved = os.environ.get(VAR), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[VAR], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        ray.init(address="local", **{**QUIET, **init_kwargs})  # a new Ray, even where a `ray start` one runs
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]
        if saved[0] is None:
            os.environ.pop(VAR, None)
        else:
            os.environ[VAR] = saved[0]


def join(address: str, **init_kwargs: Any) -> None:
    """Join the running cluster at ``address``. With a token at hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``,
    ``~/.ray/auth_token``) and ``RAY_AUTH_MODE`` unset, the token is sent: Ray's client sends none unless the mode
    is "token", and a cluster without authentication accepts a client that sends one."""
    import ray

    if "RAY_AUTH_MODE" not in os.environ and ("RAY_AUTH_TOKEN" in os.environ or token_path().is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"
        from ray._raylet import Config

        Config.initialize("")  # Ray caches its settings at import; this re-reads them
    ray.init(address=address, **{**QUIET, **init_kwargs})


def _create_token(path: Path) -> None:
    """A new random token (Ray's format: 256 bits as hex) in ``path``, readable by its owner only, unless the file
    exists. Written aside and linked into place, so a process reading it never sees it half-written."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another search made it first
    finally:
        tmp.unlink()


def auth_mode() -> str:
    """Ray's authentication mode in this process once Ray has started: "token" or "disabled"."""
    from ray._raylet import AuthenticationMode, get_authentication_mode

    return "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"


def listening_address() -> str:
    """The IP this process's Ray node listens on."""
    import ray

    return ray.util.get_node_ip_address()


def describe(local: bool) -> str:
    """One line for the console: where Ray listens and whether it asks for a token."""
    token = auth_mode() == "token"
    if not local:
        return ("Ray: joined the cluster with its token" if token else
                "Ray: joined the cluster without a token (it accepts anyone who reaches its ports; docs/cluster.md)")
    ip = listening_address()
    where = "127.0.0.1 only (this machine)" if ip == LOOPBACK else f"{ip} (reachable from the network)"
    auth = ("token authentication on" if token else
            "token authentication OFF (RAY_AUTH_MODE=disabled): anyone who reaches its ports can run code as you")
    return f"Ray: listening on {where}, {auth}"
