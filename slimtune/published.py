"""Published slim checkpoints: the manifest, the local cache, and names as checkpoint paths.

``checkpoints/manifest.json`` lists each published checkpoint (architecture, archive
URL, the checkpoint inside it, published top-1/5); its classes, image size and
preprocessing are those of the registry entry it names (joined by architecture name).
:func:`ensure` downloads one into the cache and unpacks it, once; every tool's
``--checkpoint_path`` goes through :func:`local`, so it also takes a manifest name
(``resnet_v1_50``) or a local ``.tar.gz``.

The manifest ships as package data (``slimtune_checkpoints``), so a wheel install has it
too.  The cache is ``$SLIMTUNE_CHECKPOINTS`` if set, else ``checkpoints/cache`` in a
checkout (the README's editable install), else ``~/.cache/slimtune/checkpoints``.
Each entry unpacks into ``<cache>/<name>/`` with a ``slimtune.json`` beside the
checkpoint (architecture, classes, size, preprocessing from the manifest, so no tool
needs ``--model_name``) and a ``download.json`` written last, so a directory without
it is an interrupted run and is redone.
"""

import dataclasses
import json
import os
import shutil
from typing import Optional

import slimtune_checkpoints
from slimtune import download, files, metadata, registry
from slimtune.errors import CheckpointError, UsageError

_PACKAGED = os.path.dirname(os.path.abspath(slimtune_checkpoints.__file__))
MANIFEST = os.path.join(_PACKAGED, "manifest.json")
# In a checkout (editable install) the package directory is the repository's checkpoints/.
_IN_CHECKOUT = os.path.isfile(os.path.join(os.path.dirname(_PACKAGED), "setup.cfg"))
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_DONE = "download.json"
_RECORDED = "sha256.json"  # first-download checksums of entries without a published one


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    architecture: str
    url: str
    # checkpoint prefix inside the archive, e.g. resnet_v1_50.ckpt, or its path where the
    # archive holds several (v3-large_224_1.0_float/ema/model-540000); None: the only one
    member: Optional[str]
    format: str  # "V1": TF1's one .ckpt file (the 2016-2017 archives); "V2": .index + .data
    top1: float
    top5: Optional[float]  # None where the source table gives only top-1
    sha256: Optional[str]
    manual: bool  # the URL is a web page, not a direct download
    source: str
    # Why ``member`` is the one taken, where the archive holds several checkpoints.
    taken: Optional[str] = None

    @property
    def spec(self):
        """The registry entry of this checkpoint's architecture."""
        return registry.get(self.architecture)

    @property
    def num_classes(self):
        return self.spec.num_classes

    @property
    def image_size(self):
        return self.spec.default_image_size

    @property
    def preprocessing(self):
        return self.spec.preprocessing

    def as_dict(self):
        """The manifest row with the registry's classes, size and preprocessing (the
        record ``download.json`` keeps)."""
        row = dataclasses.asdict(self)
        where = {k: row.pop(k) for k in ("name", "architecture", "url", "member", "format")}
        return {**where, "num_classes": self.num_classes, "image_size": self.image_size,
                "preprocessing": self.preprocessing, **row}

    @property
    def archive_name(self):
        if self.manual:
            return self.member.rsplit(".ckpt", 1)[0] + ".tar.gz"
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def manifest(path=None):
    """``{name: Entry}`` from the manifest file (default: checkpoints/manifest.json)."""
    path = path or MANIFEST
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)["checkpoints"]
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"cannot read the checkpoint manifest {path}: {e}; reinstall slimtune "
                         "(pip install -e . in its repository)") from None
    fields = {f.name for f in dataclasses.fields(Entry)}
    return {row["name"]: Entry(**{k: v for k, v in row.items() if k in fields}) for row in rows}


def get(name):
    entries = manifest()
    if name not in entries:
        raise UsageError(f"no published checkpoint {name!r}: choose one of "
                         f"{', '.join(sorted(entries))} (slimtune-download --list)")
    return entries[name]


def cache_root():
    if os.environ.get("SLIMTUNE_CHECKPOINTS"):
        return os.environ["SLIMTUNE_CHECKPOINTS"]
    if _IN_CHECKOUT:
        return os.path.join(_PACKAGED, "cache")
    return os.path.join(os.path.expanduser("~"), ".cache", "slimtune", "checkpoints")


def _recorded(cache):
    path = os.path.join(cache, _RECORDED)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {}


def _record(cache, name, digest):
    table = _recorded(cache)
    table[name] = digest
    tmp = os.path.join(cache, f"{_RECORDED}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(cache, _RECORDED))


def _remove_if_empty(directory):
    try:
        os.rmdir(directory)
    except OSError:
        pass


def _manual_hint(entry, cache):
    return (f"; fetch {entry.url} by hand (a browser works), then run slimtune-download "
            f"--name={entry.name} --archive=/path/to/{entry.archive_name}, or pass the file as "
            f"--checkpoint_path=/path/to/{entry.archive_name}")


def ensure(name, archive=None, cache=None, log=print):
    """The local checkpoint prefix of manifest entry ``name``, downloading it (or taking
    the ``archive`` file given) and unpacking it into the cache the first time."""
    entry = get(name)
    spec = entry.spec  # an architecture slimtune cannot build is refused before any download
    cache = cache or cache_root()
    target = os.path.join(cache, entry.name)
    if os.path.isfile(os.path.join(target, _DONE)):
        return download.checkpoint_prefix_in(target, target, entry.member)
    os.makedirs(cache, exist_ok=True)
    expected = entry.sha256 or _recorded(cache).get(entry.name)
    if archive is None:
        if entry.manual:
            raise download.DownloadError(f"{entry.name} has no direct download URL"
                                         + _manual_hint(entry, cache))
        archive = os.path.join(cache, "downloads", entry.archive_name)
        log(f"fetching {entry.name} from {entry.url}")
        try:
            digest = download.fetch(entry.url, archive, expected, log,
                                    manual_hint=_manual_hint(entry, cache))
        except BaseException:
            _remove_if_empty(os.path.dirname(archive))
            raise
        downloaded = True
    else:
        if not os.path.isfile(archive):
            raise UsageError(f"--archive={archive} does not exist")
        digest = files.sha256_of(archive)
        if expected and digest != expected:
            raise CheckpointError(f"sha256 mismatch for {archive}: expected {expected} for "
                                  f"{entry.name}, got {digest}; it is not the published file")
        downloaded = False
    try:
        shutil.rmtree(target, ignore_errors=True)  # an interrupted earlier run
        download.safe_extract(archive, target)
        prefix = download.checkpoint_prefix_in(target, archive, entry.member)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        if downloaded:
            download.remove_quietly(archive)
            _remove_if_empty(os.path.dirname(archive))
    if not entry.sha256 and not _recorded(cache).get(entry.name):
        _record(cache, entry.name, digest)
        log(f"recorded sha256 {digest} for {entry.name} (no published value); later "
            f"downloads must match it ({os.path.join(cache, _RECORDED)})")
    # What the manifest knows, where every tool looks for it: no --model_name needed.
    metadata.write(os.path.dirname(prefix), metadata.published_document(metadata.RunInfo(
        model_name=spec.name, num_classes=spec.num_classes,
        image_size=spec.default_image_size, preprocessing=spec.preprocessing), entry.name))
    with open(os.path.join(target, _DONE), "w", encoding="utf-8") as f:
        json.dump({**entry.as_dict(), "archive_sha256": digest}, f, indent=1)
    log(f"{entry.name}: {prefix}")
    return prefix


def unpack_archive(path, cache=None):
    """The checkpoint prefix inside a local archive, unpacked once into the cache (keyed
    by the archive's sha256, so the same file is never unpacked twice)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint archive {path} does not exist: check "
                              "--checkpoint_path")
    cache = cache or cache_root()
    digest = files.sha256_of(path)
    target = os.path.join(cache, "archives", digest[:16])
    if not os.path.isdir(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        download.safe_extract(path, target)
    return download.checkpoint_prefix_in(target, path)


def local(path, log=print):
    """``path`` unchanged, or the local prefix for an archive file or a manifest name."""
    if not path:
        return path
    if path.endswith(ARCHIVE_SUFFIXES):
        return unpack_archive(path)
    if (not os.path.exists(path) and not os.path.exists(path + ".index") and "/" not in path
            and path in manifest()):
        return ensure(path, log=log)
    return path
