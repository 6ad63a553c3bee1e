"""Writing files and directories so that nothing is ever half-written.

Everything is written under a temporary name beside its destination and renamed into
place only when complete (a rename within one directory is atomic); on any error the
temporary file or directory is removed and the destination is as it was.
"""

import contextlib
import hashlib
import json
import os
import shutil


def temporary_name(path, keep_extension=False):
    """The name ``path`` is written under until it is complete; with ``keep_extension``
    it ends as ``path`` does (writers that go by the extension: Keras's ``.keras``)."""
    root, extension = os.path.splitext(path) if keep_extension else (path, "")
    return f"{root}.tmp{os.getpid()}{extension}"


@contextlib.contextmanager
def staged(path, keep_extension=False):
    """Yield a temporary name to write ``path`` under, by any means; it takes the place
    of ``path`` when the block ends, and is removed if the block raises."""
    tmp = temporary_name(path, keep_extension)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text, mode="w"):
    """Write ``text`` (``bytes`` with ``mode="wb"``) to ``path`` atomically."""
    encoding = None if "b" in mode else "utf-8"
    with staged(path) as tmp, open(tmp, mode, encoding=encoding) as f:
        f.write(text)
    return path


def write_json(path, data, end="", **dump_args):
    """Write ``data`` as JSON (``json.dumps`` arguments, then ``end``) to ``path``
    atomically."""
    return write_text(path, json.dumps(data, **dump_args) + end)


def write_directory(directory, fill, merge=False):
    """Create ``directory`` all at once: ``fill(tmp)`` writes into a temporary sibling,
    which takes the place of ``directory`` only when complete; on any failure nothing
    is left behind.

    An existing ``directory`` is replaced (the caller has checked that it is empty or
    meant to be overwritten), or with ``merge`` keeps its other files and gets the new
    ones beside them.
    """
    parent, base = os.path.split(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, temporary_name("." + base))
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        fill(tmp)
        if merge and os.path.isdir(directory):
            for name in os.listdir(tmp):
                os.replace(os.path.join(tmp, name), os.path.join(directory, name))
        else:
            if os.path.exists(directory):
                shutil.rmtree(directory)
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_of(path, chunk=1 << 20):
    """The hex sha256 of the file at ``path``, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
