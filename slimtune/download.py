"""Download a file with progress and a checksum; unpack a checkpoint archive safely.

Both leave nothing half-written (``slimtune.files``): a download streams into a
temporary name and is renamed only once complete and its sha256 checked; an archive is
unpacked into a temporary sibling directory renamed into place when every member is out.

Archives come from the internet, so members are checked *before* anything is written:
absolute paths, ``..`` components, symbolic and hard links, and device/FIFO entries
are refused (a checkpoint archive holds regular files and directories only).
"""

import hashlib
import os
import tarfile
import time
import urllib.error
import urllib.request

from slimtune import files
from slimtune.errors import CheckpointError
from slimtune.progress import format_seconds

_CHUNK = 1 << 20


class DownloadError(CheckpointError):
    """The file could not be fetched (no network, HTTP error)."""


def _progress_line(done, total, started):
    elapsed = max(time.monotonic() - started, 1e-6)
    rate = done / elapsed
    line = f"{done / 1e6:.1f}"
    if total:
        eta = (total - done) / rate if rate > 0 else 0
        line += f"/{total / 1e6:.1f} MB {100 * done / total:3.0f}%"
        line += f" {rate / 1e6:.1f} MB/s ETA {format_seconds(eta)}"
    else:
        line += f" MB {rate / 1e6:.1f} MB/s"
    return line


def fetch(url, dest, expected_sha256=None, log=print, timeout=60, manual_hint=""):
    """Download ``url`` to ``dest``; returns its sha256.  A mismatch with
    ``expected_sha256`` deletes the download and raises :class:`CheckpointError`."""
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    with files.staged(dest) as part:
        actual, done = _stream(url, part, log, timeout, manual_hint, os.path.basename(dest))
        if expected_sha256 and actual != expected_sha256.lower():
            raise CheckpointError(f"sha256 mismatch for {url}: expected {expected_sha256}, "
                                  f"got {actual}; the download was deleted (corrupt transfer "
                                  "or a changed file): try again, or check the manifest entry")
    log(f"downloaded {os.path.basename(dest)}: {done / 1e6:.1f} MB, sha256 {actual}")
    return actual


def _stream(url, path, log, timeout, manual_hint, name):
    """Write ``url`` into ``path`` with progress lines; returns ``(sha256, bytes)``."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, started, shown = 0, time.monotonic(), 0.0
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                done += len(block)
                if time.monotonic() - shown > 1.0:
                    log(f"downloading {name}: {_progress_line(done, total, started)}")
                    shown = time.monotonic()
        if total and done != total:
            raise DownloadError(f"download of {url} stopped at {done} of {total} bytes: run "
                                "the same command again")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot download {url} ({reason}){manual_hint}") from None
    return digest.hexdigest(), done


def remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def unsafe_member(member):
    """Why a tar member may not be extracted, or ``None`` when it is a plain file/dir."""
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a '..' path component"
    if member.issym() or member.islnk():
        return f"a link (to {member.linkname})"
    if not (member.isfile() or member.isdir()):
        return "a device, FIFO or other special file"
    return None


def safe_extract(archive, dest_dir):
    """Unpack ``archive`` into ``dest_dir`` (which must not exist yet), all or nothing."""

    def fill(tmp):
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                for member in members:
                    why = unsafe_member(member)
                    if why:
                        raise CheckpointError(
                            f"refusing archive {archive}: member {member.name!r} is {why}; a "
                            "checkpoint archive holds only regular files (fetch it again from "
                            "the official URL)")
                tar.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise CheckpointError(f"cannot unpack checkpoint archive {archive}: {e}; download "
                                  "it again") from None

    files.write_directory(dest_dir, fill)
    return dest_dir


def checkpoints_in(directory):
    """The checkpoint prefixes under ``directory``: TF2-era (V2) ones by their ``.index``
    file, and TF1's V1 format, one file without ``.index`` or ``.data`` (research/slim's
    2016-2017 archives hold one, e.g. ``resnet_v1_50.ckpt``), by its ``.ckpt`` name."""
    found = []
    for root, _, names in os.walk(directory):
        present = set(names)
        for name in names:
            if name.endswith(".index"):
                found.append(os.path.join(root, name[: -len(".index")]))
            elif _is_v1_name(name) and name + ".index" not in present:
                found.append(os.path.join(root, name))
    return sorted(found)


def _is_member(prefix, member):
    """Whether unpacked ``prefix`` is the archive member ``member`` (a name, or a path
    whose last parts must match: MobileNet v3's archives hold ``ema/`` and ``pristine/``
    checkpoints)."""
    parts = member.strip("/").split("/")
    return prefix.replace(os.sep, "/").split("/")[-len(parts):] == parts


def _is_v1_name(name):
    """``x.ckpt`` or ``x.ckpt-<step>``: the names TF1's V1 Saver gives its one file."""
    base, _, step = name.rpartition(".ckpt")
    return bool(base) and (step == "" or (step.startswith("-") and step[1:].isdigit()))


def checkpoint_prefix_in(directory, archive, member=None):
    """The checkpoint prefix inside an unpacked archive: ``member`` when given (e.g.
    ``resnet_v1_50.ckpt``, a V1 file or a V2 prefix, or a path inside the archive such as
    ``v3-large_224_1.0_float/ema/model-540000`` where an archive holds several), else the
    only one there is."""
    prefixes = checkpoints_in(directory)
    if member:
        chosen = [p for p in prefixes if _is_member(p, member)]
        if len(chosen) == 1:
            return chosen[0]
        raise CheckpointError(f"archive {archive} has no checkpoint {member} (it holds "
                              f"{[os.path.relpath(p, directory) for p in prefixes]}): the "
                              "manifest entry is wrong or the archive changed")
    if len(prefixes) != 1:
        raise CheckpointError(f"archive {archive} holds {len(prefixes)} checkpoints (.index "
                              "files or V1 .ckpt files); extract it and pass one prefix as "
                              "--checkpoint_path")
    return prefixes[0]
