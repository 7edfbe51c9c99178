"""The unit's secret: the key of every keyed hash the unit writes (the audit log's CNICs).

Why a per-unit secret and not a plain SHA-256: CNICs are 13 digits, so the whole space is
10^13 values and an unkeyed hash of one is reversed by brute force in hours on a GPU. Keyed
with 32 random bytes that never leave the unit, the audit log's hashes say "the same CNIC
as in that other row" and nothing more, even to someone who copies the data disk's
``state.db`` without the key file.

The file holds 64 lower-case hex digits and a newline, the same format
``scripts/provision.sh`` writes at provisioning; the service creates it itself only where
provisioning did not (the demo, tests, a unit set up by hand). It is:

* **made once, never replaced**: losing it makes every earlier audit row unmatchable, so
  an existing file is always read, never regenerated;
* **published atomically**: written and fsynced under a temporary name created with
  ``O_EXCL`` and mode 0600, then ``link(2)``-ed to its name, which fails if the name exists.
  Creating the final name with ``O_EXCL`` directly would leave an empty key file behind a
  power cut between ``open`` and ``fsync``, and the next start would refuse it;
* **private**: refused if group or others may read or write it (like ssh refuses a private
  key), with the ``chmod`` that fixes it;
* **never logged**: no function here puts the key, or anything derived from it, in a log
  record or an exception message.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)

SECRET_BYTES = 32
_HEX_KEY = re.compile(r"[0-9a-f]{%d}" % (2 * SECRET_BYTES))


def load_or_create_secret(path: Path | str) -> bytes:
    """The 32-byte unit secret in ``path``, created there (mode 0600) if there is none.

    Raises :class:`~appliance.errors.ConfigError` naming the file and the fix when it is
    readable by group or others, not a regular file, or not 64 hex digits.
    """
    path = Path(path)
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    try:
        _create(path)
    except FileExistsError:
        pass  # another process published one first: theirs is the unit's secret
    return _load(path)


def _load(path: Path) -> bytes:
    # O_NOFOLLOW: a symlink planted in the data directory must not redirect the key.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the unit secret ({exc.strerror or exc}); it must "
                          "be a regular file (not a symlink) readable by the service user"
                          ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: the unit secret is not a regular file; move it aside "
                              "and let the unit (or scripts/provision.sh) make a new one")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"{path}: the unit secret has mode {stat.S_IMODE(st.st_mode):04o}, so group or "
                f"others may read it; run: chmod 600 {path}")
        raw = os.read(fd, 4 * SECRET_BYTES)
    finally:
        os.close(fd)
    text = raw.decode("ascii", "replace").strip()
    if _HEX_KEY.fullmatch(text) is None:
        # The content is not quoted: even a malformed key is key material.
        raise ConfigError(
            f"{path}: the unit secret is not {2 * SECRET_BYTES} lower-case hex digits; move it "
            "aside only if this unit has no audit history to keep, then restart to make a new one")
    return bytes.fromhex(text)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the mode argument is only honoured through the umask
            os.write(fd, (secrets.token_hex(SECRET_BYTES) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails with FileExistsError: a secret is never replaced
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    log.info("created the unit secret %s (mode 0600); back it up with the unit's data", path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
