"""A full disk, a file-size limit and a read-only state dir during apply.

The apply fails with ``500 apply_failed``; the old state is served whole and
byte-equal, the lock is still held by the same holder, peer health still
answers, and once the fault is gone the same lock applies the same snapshot.

The full disk is a small tmpfs (``mount -t tmpfs -o size=...``): that needs
root and a mount namespace that allows it, else the test skips saying why.
The read-only directory is ``chattr +i`` (which stops root too; ``chmod``
when not root). A remount ``ro`` is refused while the server holds its
``lock`` file open for writing, which is also why a real read-only remount
under a running server is rare. The file-size limit (``RLIMIT_FSIZE`` on the
server process) runs everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hostile_util import (
    SECRET,
    TOKEN,
    Server,
    canonical,
    make_state,
    server,
    snapshot_body,
    state_text,
)

from peersync_proto import decode_snapshot
from peersync_server import PeerSyncClient, PeerSyncError, StandaloneHost


def _mount(args: list[str]) -> str | None:
    """Run ``mount``; the reason it failed, or ``None``."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs"
    try:
        done = subprocess.run(["mount", *args], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mount failed: {exc}"
    return None if done.returncode == 0 else f"mount failed: {done.stderr.decode().strip()}"


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    reason = _mount(["-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)])
    if reason is not None:
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10, check=False)


def _fill(disk: Path) -> Path:
    """Fill the file system to the last byte; returns the filler file."""
    filler = disk / "filler"
    chunk = b"\0" * (64 * 1024)
    with filler.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        with contextlib.suppress(OSError):
            while f.write(b"\0"):
                pass
    return filler


Switch = Callable[[], object]
#: Contract 2 and 3.4: the host could not apply (``apply_failed``), or failed
#: while serving the request, say spooling the upload (``internal``). Either
#: way a 500 with a code: never a connection closed without an answer.
FAILED_APPLY = {(500, "apply_failed"), (500, "internal")}


def _prove_fault_then_recover(srv: Server, fault_on: Switch, fault_off: Switch) -> None:
    """Apply A, take the lock, fault, apply B (500), check, clear, apply B (200)."""
    state_a, state_b = make_state(20_000, tag=1), make_state(1_500_000, tag=2)
    with PeerSyncClient(srv.url, api_token=TOKEN, timeout=30) as client:
        first = client.acquire_lock(owner="recon", ttl_ms=60_000)
        client.apply_state(snapshot_body(state_a, epoch=3, seq=10), first.lock_id)
        client.release_lock(first.lock_id)
        grant = client.acquire_lock(owner="recon", ttl_ms=60_000)
        fault_on()
        with pytest.raises(PeerSyncError) as refused:
            client.apply_state(snapshot_body(state_b, epoch=4, seq=20), grant.lock_id)
        assert (refused.value.status, refused.value.code) in FAILED_APPLY
        # The old state whole, byte-equal; the lock still held by the same holder.
        assert state_text(client.get_state_bytes()) == canonical(state_a)
        status = client.lock_status()
        assert status.held and status.owner == "recon"
        assert status.fencing_token == grant.fencing_token
        health = client.peer_health()
        assert health.epoch == 3 and health.last_command_seq == 10
        fault_off()
        result = client.apply_state(snapshot_body(state_b, epoch=4, seq=20), grant.lock_id)
        assert result.epoch == 4
        assert state_text(client.get_state_bytes()) == canonical(state_b)
        client.release_lock(grant.lock_id)
    assert srv.terminate() == 0


def test_full_disk_during_apply_is_500_and_keeps_the_old_state_and_the_lock(
    tmp_path: Path,
) -> None:
    disk = tmp_path / "disk"
    with small_tmpfs(disk, "3m"), server(tmp_path, state_dir=disk / "state") as srv:
        filler: list[Path] = []
        _prove_fault_then_recover(
            srv, lambda: filler.append(_fill(disk)), lambda: filler[0].unlink()
        )


def test_failed_apply_on_a_full_disk_leaves_no_temp_file_eating_the_space(
    tmp_path: Path,
) -> None:
    """The host itself (in process), so no upload path can fail first."""
    disk = tmp_path / "disk"
    with small_tmpfs(disk, "3m"):
        host = StandaloneHost(disk / "state")
        host.open("a")
        try:
            _fill(disk).unlink()
            (disk / "big").write_bytes(b"\0" * 1_800_000)  # ~1.2 MB left
            snapshot = decode_snapshot(snapshot_body(make_state(1_500_000, tag=2), epoch=4))
            with pytest.raises(OSError):
                host.apply(snapshot)  # does not fit
            leftovers = [p.name for p in (disk / "state").iterdir() if p.name.endswith(".tmp")]
            assert leftovers == [], f"partial temp files left on the full disk: {leftovers}"
        finally:
            (disk / "big").unlink(missing_ok=True)
            host.close()


def _chattr(flag: str, path: Path) -> bool:
    try:
        done = subprocess.run(
            ["chattr", flag, str(path)], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def read_only_switch(state_dir: Path) -> Iterator[tuple[Switch, Switch]]:
    """Make ``state_dir`` refuse new entries: ``chattr +i`` (stops root too),
    or ``chmod 0500`` when not root; skip when neither can work."""
    probe = state_dir.parent / "probe"
    probe.mkdir()
    chattr_ok = _chattr("+i", probe) and _chattr("-i", probe)
    probe.rmdir()
    if not chattr_ok and os.geteuid() == 0:
        pytest.skip("root ignores chmod and this file system has no chattr +i")

    def on() -> None:
        if chattr_ok:
            assert _chattr("+i", state_dir)
        else:
            state_dir.chmod(0o500)

    def off() -> None:
        if chattr_ok:
            assert _chattr("-i", state_dir)
        else:
            state_dir.chmod(0o700)

    try:
        yield on, off
    finally:
        off()  # never leave an undeletable directory behind


def test_acquire_on_a_full_disk_is_500_and_grants_nothing(tmp_path: Path) -> None:
    """Contract 2: a host failure is 500 and the engine's state is unchanged."""
    disk = tmp_path / "disk"
    with (
        small_tmpfs(disk, "3m"),
        server(tmp_path, state_dir=disk / "state") as srv,
        PeerSyncClient(srv.url, api_token=TOKEN, timeout=30) as client,
    ):
        _fill(disk)
        with pytest.raises(PeerSyncError) as refused:
            client.acquire_lock(owner="recon", ttl_ms=60_000)
        assert refused.value.status == 500
        status = client.lock_status()
        assert not status.held, f"a 500 acquire left the lock held by {status.owner!r}"
        assert status.last_fencing_token == 0


def test_force_leader_on_a_full_disk_is_500_and_promotes_nothing(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with (
        small_tmpfs(disk, "3m"),
        server(tmp_path, state_dir=disk / "state") as srv,
        PeerSyncClient(srv.url, control_plane_secret=SECRET, timeout=30) as client,
    ):
        _fill(disk)
        with pytest.raises(PeerSyncError) as refused:
            client.force_leader(reason="disk full")
        assert refused.value.status == 500
        health = client.peer_health()
        assert (health.role.value, health.epoch) == ("follower", 0), health


def test_read_only_state_dir_during_apply_is_500_and_keeps_the_old_state_and_the_lock(
    tmp_path: Path,
) -> None:
    with server(tmp_path) as srv, read_only_switch(srv.state_dir) as (on, off):
        _prove_fault_then_recover(srv, on, off)


def test_file_size_limit_during_apply_is_500_and_keeps_the_old_state_and_the_lock(
    tmp_path: Path,
) -> None:
    """Portable: RLIMIT_FSIZE makes every write past 1 MiB fail with EFBIG."""
    limit = 1 << 20

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with server(tmp_path, preexec=cap) as srv:
        # The limit is always on: only B (1.5 MB) is over it.
        state_a, state_b = make_state(20_000, tag=1), make_state(1_500_000, tag=2)
        with PeerSyncClient(srv.url, api_token=TOKEN, timeout=30) as client:
            grant = client.acquire_lock(owner="recon", ttl_ms=60_000)
            client.apply_state(snapshot_body(state_a, epoch=3, seq=10), grant.lock_id)
            with pytest.raises(PeerSyncError) as refused:
                client.apply_state(snapshot_body(state_b, epoch=4, seq=20), grant.lock_id)
            assert (refused.value.status, refused.value.code) in FAILED_APPLY
            assert state_text(client.get_state_bytes()) == canonical(state_a)
            status = client.lock_status()
            assert status.held and status.fencing_token == grant.fencing_token
            assert client.peer_health().epoch == 3
            small = make_state(50_000, tag=3)
            assert client.apply_state(snapshot_body(small, epoch=4), grant.lock_id).epoch == 4
        assert srv.terminate() == 0
    with server(tmp_path) as again, PeerSyncClient(again.url, api_token=TOKEN) as client:
        assert state_text(client.get_state_bytes()) == canonical(small)
