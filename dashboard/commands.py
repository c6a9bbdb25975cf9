"""`iirg dashboard`: start the Streamlit dashboard for one run (registered by cli.py).

    iirg dashboard --run runs/ml-100k                                  # http://127.0.0.1:8501
    iirg dashboard --run runs/ml-100k --port 8600 --neo4j bolt://localhost:7687

The handler runs `python -m streamlit run dashboard/app.py` in the foreground and passes the run
folder and store settings through the child's environment (see dashboard/cache.py): the Neo4j password
never appears on a command line. Streamlit is imported by the child only, so `iirg --help` stays fast.
"""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
import sys
from pathlib import Path

from common.errors import IirgError

APP = Path(__file__).resolve().parent / "app.py"


class DashboardError(IirgError):
    """The dashboard cannot start (port taken, Streamlit missing)."""


def register(sub, common) -> None:
    """Add `iirg dashboard` to the `iirg` parser."""
    parser = sub.add_parser(
        "dashboard", parents=[common["run"], common["store"]],
        help="explore memorization paths, models and the graph in a browser (Streamlit)",
        description="Start the dashboard on localhost: overview of segments and model metrics, user and "
                    "item explorers, read-only Cypher console. Reads the run's graph (or Neo4j) read-only.")
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default: 8501)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 in a container)")
    parser.set_defaults(handler=run_dashboard)


def dashboard_env(run: Path, store, base_env: dict[str, str]) -> dict[str, str]:
    """The child's environment: the caller's, plus the dashboard settings (password included)."""
    from dashboard import settings as dashboard_settings

    env = {k: v for k, v in base_env.items()
           if k not in (dashboard_settings.ENV_NEO4J, dashboard_settings.ENV_NEO4J_USER, dashboard_settings.ENV_NEO4J_DATABASE)}
    env[dashboard_settings.ENV_RUN] = str(Path(run).resolve())
    if store is not None and store.backend == "neo4j":
        env[dashboard_settings.ENV_NEO4J] = store.uri
        env[dashboard_settings.ENV_NEO4J_USER] = store.user or "neo4j"
        if store.database:
            env[dashboard_settings.ENV_NEO4J_DATABASE] = store.database
        if store.password:
            env[dashboard_settings.ENV_PASSWORD] = store.password
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    return env


def streamlit_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise DashboardError(f"port {port} on {host} is already in use: pass --port") from e
            raise DashboardError(f"cannot serve on {host}:{port}: {e}") from e


def run_dashboard(args, ctx) -> int:
    import importlib.util

    if importlib.util.find_spec("streamlit") is None:
        raise DashboardError("streamlit is not installed: pip install 'iirg[dashboard]'")
    if not 0 < args.port < 65536:
        raise DashboardError(f"--port must be between 1 and 65535, not {args.port}")
    if not ctx.run.root.is_dir():
        raise DashboardError(f"run folder {ctx.run.root} does not exist: build it with "
                             f"`iirg build --dataset <name> --run {ctx.run.root}`")
    if ctx.store.backend == "embedded" and not Path(ctx.store.path).exists():
        print(f"warning: {ctx.store.path} holds no graph yet; the pages will say so until "
              f"`iirg build --run {ctx.run.root}` has run", file=sys.stderr)
    _check_port(args.host, args.port)
    shown_host = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::") else args.host
    print(f"iirg dashboard for {ctx.run.root} ({ctx.store.describe()}): http://{shown_host}:{args.port}  "
          "(Ctrl-C to stop)", flush=True)
    child = subprocess.Popen(streamlit_command(args.host, args.port),
                             env=dashboard_env(ctx.run.root, ctx.store, ctx.env))
    # `docker stop` / kill send SIGTERM to this process only: pass it on so Streamlit shuts down too.
    signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
        raise
