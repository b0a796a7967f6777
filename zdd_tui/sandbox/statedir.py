"""The sandbox's state directory: made and marked by the sandbox, the only place its token is read from.

`zdd.yaml` names the directory (`sandbox.state_dir`) and may come from anyone, so the token file
in it is read only when the directory is the sandbox's own: a real directory (not a symlink)
owned by the current user with no access for anyone else, holding the marker file the sandbox
wrote (owner-only too). The token and the marker are opened without following symlinks, relative
to the directory already checked, so nothing can be swapped in between the checks and the read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from zdd_tui.errors import UsageError

MARKER = ".zdd-sandbox"
TOKEN = "token"
_MARKER_TEXT = "A zdd-tui sandbox's state directory (written by `zdd-tui sandbox up`); its token file is a throwaway.\n"
_FIX = "start the sandbox with `zdd-tui sandbox up` (it makes its state directory and writes this zdd.yaml)"


class StateDirError(UsageError):
    """The directory is not one the sandbox made and marked as its own (or is unusable)."""


def _private(st: os.stat_result) -> str | None:
    """Why a file's owner or mode make it unfit to hold the sandbox's token; None when fit."""
    if st.st_uid != os.geteuid():
        return f"it belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})"
    if st.st_mode & 0o077:
        return f"its mode is {stat.S_IMODE(st.st_mode):04o}, not owner-only"
    return None


def _open_dir(path: Path, fix: str = _FIX) -> int:
    """A descriptor of the directory itself (never through a symlink); StateDirError else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StateDirError(f"the sandbox's state directory {path} does not exist", fix) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StateDirError(f"the sandbox's state directory {path} is a symlink or not a directory; "
                                "the sandbox's token is kept only in a directory the sandbox made", fix) from None
        raise StateDirError(f"cannot open the sandbox's state directory {path}: {exc.strerror}") from None
    why = _private(os.fstat(fd))
    if why:
        os.close(fd)
        raise StateDirError(f"the sandbox's state directory {path} is not private to you: {why}", fix)
    return fd


def _open_private_file(dir_fd: int, name: str, flags: int = os.O_RDONLY) -> tuple[int, str | None]:
    """(descriptor, why it is unfit or None) of a regular file in the directory, not followed if a symlink."""
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    st = os.fstat(fd)
    return fd, ("it is not a regular file" if not stat.S_ISREG(st.st_mode) else _private(st))


def _marked(dir_fd: int, path: Path) -> bool:
    """Whether the sandbox's marker is there; StateDirError when something unfit stands in its place."""
    try:
        fd, why = _open_private_file(dir_fd, MARKER)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateDirError(f"{path / MARKER} cannot be the sandbox's marker: "
                            f"{'a symlink' if exc.errno == errno.ELOOP else exc.strerror}", _FIX) from None
    os.close(fd)
    if why:
        raise StateDirError(f"{path / MARKER} cannot be the sandbox's marker: {why}", _FIX)
    return True


def claim(path: Path) -> None:
    """Make `path` the sandbox's state directory: create it (mode 0700) and mark it, or check an
    existing one. An existing unmarked directory is taken only when it is private and holds no
    token (a token there would not be the sandbox's own)."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    fd = _open_dir(path, "pass a new directory as --state-dir (the sandbox makes it, mode 0700)")
    try:
        if _marked(fd, path):
            return
        try:
            os.stat(TOKEN, dir_fd=fd, follow_symlinks=False)
            foreign_token = True
        except FileNotFoundError:
            foreign_token = False
        if foreign_token:
            raise StateDirError(
                f"{path} holds a file named {TOKEN} but is not marked as a sandbox's state directory "
                f"(no {MARKER}), so the sandbox does not take it",
                "remove the directory if it is an old sandbox's (its state is throwaway), or pass another --state-dir",
            )
        mfd = os.open(MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        with os.fdopen(mfd, "w") as f:
            f.write(_MARKER_TEXT)
    finally:
        os.close(fd)


def read_token(path: Path) -> str:
    """The sandbox's throwaway token from its own state directory; StateDirError otherwise."""
    fd = _open_dir(path)
    try:
        if not _marked(fd, path):
            raise StateDirError(
                f"{path} is not a sandbox's state directory (no {MARKER} written by the sandbox); "
                "zdd-tui reads the sandbox's token only from the directory the sandbox made", _FIX)
        try:
            tfd, why = _open_private_file(fd, TOKEN)
        except FileNotFoundError:
            raise StateDirError(f"the sandbox's token file {path / TOKEN} does not exist", _FIX) from None
        except OSError as exc:
            reason = "it is a symlink" if exc.errno == errno.ELOOP else exc.strerror
            raise StateDirError(f"cannot read the sandbox's token file {path / TOKEN}: {reason}") from None
        with os.fdopen(tfd, "rb") as f:
            if why:
                raise StateDirError(f"the sandbox's token file {path / TOKEN} is not the sandbox's: {why}", _FIX)
            token = f.read(4096).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    if not token:
        raise StateDirError(f"the sandbox's token file {path / TOKEN} is empty", "restart `zdd-tui sandbox up`")
    return token


def write_token(path: Path, token: str) -> None:
    """Create the token file (owner-only) in the claimed directory; an existing one is left as it is."""
    fd = _open_dir(path)
    try:
        tfd = os.open(TOKEN, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        with os.fdopen(tfd, "w") as f:
            f.write(token + "\n")
    finally:
        os.close(fd)
