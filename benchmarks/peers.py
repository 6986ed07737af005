"""The peer tools' own virtualenv, `benchmarks/.peers` (git-ignored): they are not copyjob's
dependencies, and must not change the versions copyjob runs with."""

import subprocess
import sys

from settings import BENCH_DIR

PEERS = BENCH_DIR / ".peers"
REQUIREMENTS = BENCH_DIR / "requirements-peers.txt"
STAMP = PEERS / "installed-requirements.txt"


def ensure() -> None:
    """Create or update the environment when requirements-peers.txt changed since."""
    wanted = REQUIREMENTS.read_text()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print(f"Installing the peer tools into {PEERS} ...", flush=True)
    if not (PEERS / "bin" / "pip").exists():  # also a venv left half-made
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(PEERS)], check=True)
        subprocess.run([str(PEERS / "bin" / "python"), "-m", "ensurepip"], check=True)
    subprocess.run(
        [str(PEERS / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
        check=True,
    )
    STAMP.write_text(wanted)
