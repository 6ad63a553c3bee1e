"""slimtune-download and manifest names as --checkpoint_path, against a local HTTP server.

The server on 127.0.0.1 serves archives the tests build; the manifest is a test copy
whose URLs point at it.  Nothing here touches the network or the repository's cache.
"""

import hashlib
import http.server
import io
import json
import os
import tarfile
import threading

import pytest

from slimtune import checkpoint, download, published, sources
from slimtune.errors import CheckpointError


class _Server:
    """Serves ``files`` (``{path: bytes}``) and counts the requests for each."""

    def __init__(self):
        self.files, self.hits = {}, {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = server.files.get(self.path)
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()


def _archive(members):
    """A .tar.gz in memory; ``members`` are ``(name, bytes)`` or ``(name, TarInfo setup)``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if callable(content):
                content(info)
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _checkpoint_members(prefix):
    return [(os.path.basename(prefix) + suffix, open(prefix + suffix, "rb").read())
            for suffix in (".index", ".data-00000-of-00001")]


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    """Write a test manifest of ``{name: fields}`` and point slimtune at it."""
    path = tmp_path / "manifest.json"
    cache = tmp_path / "cache"
    monkeypatch.setattr(published, "MANIFEST", str(path))
    monkeypatch.setenv("SLIMTUNE_CHECKPOINTS", str(cache))

    def write(**entries):
        defaults = dict(architecture="resnet_v1_50", member="resnet_v1_50.ckpt", format="V1",
                        top1=75.2, top5=92.2, sha256=None, manual=False, source="test")
        rows = [{**defaults, "name": name, **fields} for name, fields in entries.items()]
        path.write_text(json.dumps({"checkpoints": rows}))
        return cache

    return write


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    """A resnet_v1_50 checkpoint as research/slim's 2016 archive holds it: one V1 file
    named resnet_v1_50.ckpt, written by a V1 Saver (randomised BatchNorm statistics)."""
    from slim_checkpoints import make_checkpoint, read, write_v1

    root = tmp_path_factory.mktemp("published")
    saved = make_checkpoint(str(root / "v2" / "model.ckpt"), "resnet_v1_50", 1000,
                            global_step=0)
    return write_v1(str(root / "resnet_v1_50.ckpt"), read(saved))


@pytest.fixture(scope="module")
def v2_checkpoint(real_checkpoint, tmp_path_factory):
    """The same tensors as a V2 prefix resnet_v1_50.ckpt (.index and .data files), as
    the MobileNet and DenseNet archives hold theirs."""
    from slim_checkpoints import read, write

    return write(str(tmp_path_factory.mktemp("v2") / "resnet_v1_50.ckpt"),
                 read(real_checkpoint))


def test_download_unpack_and_reuse_the_cache(server, manifest, real_checkpoint):
    """The real archive layout: resnet_v1_50_2016_08_28.tar.gz holds resnet_v1_50.ckpt,
    TF1's V1 format (one file)."""
    body = _archive([("resnet_v1_50.ckpt", open(real_checkpoint, "rb").read())])
    server.files["/resnet_v1_50_2016_08_28.tar.gz"] = body
    cache = manifest(resnet_v1_50={
        "url": server.url + "/resnet_v1_50_2016_08_28.tar.gz",
        "sha256": hashlib.sha256(body).hexdigest()})
    lines = []
    prefix = published.ensure("resnet_v1_50", log=lines.append)
    assert prefix == str(cache / "resnet_v1_50" / "resnet_v1_50.ckpt")
    assert checkpoint.read_shapes(prefix)["resnet_v1_50/logits/weights"] == (1, 1, 2048, 1000)
    from slimtune import metadata

    meta = metadata.read(prefix)  # tools need no --model_name; the registry gives the rest
    assert (meta["model_name"], meta["num_classes"], meta["image_size"],
            meta["preprocessing"]) == ("resnet_v1_50", 1000, 224, "vgg")
    done = json.loads((cache / "resnet_v1_50" / "download.json").read_text())
    assert list(done)[:8] == ["name", "architecture", "url", "member", "format",
                              "num_classes", "image_size", "preprocessing"]
    assert done["num_classes"] == 1000 and done["format"] == "V1"
    assert any(line.startswith("downloaded resnet_v1_50_2016_08_28.tar.gz") for line in lines)
    assert not (cache / "downloads").exists(), "the archive is removed once unpacked"
    # Again, and through --checkpoint_path's resolver: the cache answers, no request.
    assert published.ensure("resnet_v1_50", log=lines.append) == prefix
    assert sources.checkpoint_prefix("resnet_v1_50") == prefix
    assert server.hits == {"/resnet_v1_50_2016_08_28.tar.gz": 1}


def test_unknown_checksum_is_recorded_then_enforced(server, manifest, tmp_path):
    body = _archive([("m.ckpt.index", b"index"), ("m.ckpt.data-00000-of-00001", b"data")])
    server.files["/m.tgz"] = body
    cache = manifest(m={"url": server.url + "/m.tgz", "member": "m.ckpt"})
    lines = []
    published.ensure("m", log=lines.append)
    digest = hashlib.sha256(body).hexdigest()
    assert json.loads((cache / "sha256.json").read_text()) == {"m": digest}
    assert any(f"recorded sha256 {digest}" in line for line in lines)
    # The cache is lost and the server now serves something else: refused.
    import shutil

    shutil.rmtree(cache / "m")
    server.files["/m.tgz"] = _archive([("m.ckpt.index", b"other")])
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        published.ensure("m", log=lines.append)


def test_checksum_mismatch_leaves_the_cache_clean(server, manifest):
    server.files["/a.tar.gz"] = _archive([("resnet_v1_50.ckpt.index", b"x")])
    cache = manifest(a={"url": server.url + "/a.tar.gz", "sha256": "0" * 64})
    with pytest.raises(CheckpointError) as error:
        published.ensure("a", log=lambda line: None)
    assert str(error.value).startswith("sha256 mismatch for http://127.0.0.1")
    leftovers = [os.path.join(root, f) for root, _, files in os.walk(cache) for f in files]
    assert leftovers == [] and not (cache / "a").exists()


def _symlink(info):
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"


@pytest.mark.parametrize("member,content,why", [
    ("../escaped.index", b"x", "'..'"),
    ("/abs/resnet_v1_50.ckpt.index", b"x", "absolute"),
    ("resnet_v1_50.ckpt.index", _symlink, "a link"),
])
def test_unsafe_archives_are_refused_and_nothing_is_written(server, manifest, tmp_path, member,
                                                            content, why):
    server.files["/evil.tar.gz"] = _archive([("ok.txt", b"fine"), (member, content)])
    cache = manifest(evil={"url": server.url + "/evil.tar.gz"})
    with pytest.raises(CheckpointError, match=f"refusing archive .*{why}"):
        published.ensure("evil", log=lambda line: None)
    assert not (cache / "evil").exists()
    assert not (cache / "escaped.index").exists() and not (tmp_path / "escaped.index").exists()
    assert not [f for _, _, files in os.walk(cache) for f in files if f != "sha256.json"]


def test_no_network_says_which_url_to_fetch_and_which_flag_takes_it(manifest):
    cache = manifest(offline={"url": "http://127.0.0.1:9/offline.tar.gz"})  # nothing on 9
    with pytest.raises(download.DownloadError) as error:
        published.ensure("offline", log=lambda line: None)
    assert not [f for _, dirs, files in os.walk(cache) for f in files + dirs]
    message = str(error.value)
    assert message.startswith("cannot download http://127.0.0.1:9/offline.tar.gz")
    assert "slimtune-download --name=offline --archive=/path/to/offline.tar.gz" in message
    assert "--checkpoint_path=/path/to/offline.tar.gz" in message


def test_an_archive_fetched_by_hand(manifest, tmp_path, v2_checkpoint):
    archive = tmp_path / "tf-densenet121.tar.gz"
    archive.write_bytes(_archive(_checkpoint_members(v2_checkpoint)))
    manifest(manual={"url": "https://example.org/page", "manual": True, "format": "V2"})
    with pytest.raises(download.DownloadError, match="has no direct download URL"):
        published.ensure("manual", log=lambda line: None)
    prefix = published.ensure("manual", archive=str(archive), log=lambda line: None)
    assert os.path.basename(prefix) == "resnet_v1_50.ckpt"
    # A local archive given straight to --checkpoint_path is unpacked once, by content.
    assert sources.checkpoint_prefix(str(archive)) == sources.checkpoint_prefix(str(archive))


def test_an_archive_with_ema_and_raw_checkpoints_takes_the_member_named_by_its_path(
        manifest, tmp_path, v2_checkpoint):
    """MobileNet v3's archives hold two checkpoints (ema/ and the raw weights): the
    manifest's member is a path inside the archive, and a wrong one lists what is there."""
    inside = [(f"v3-large_224_1.0_float/{where}/" + name, content)
              for where in ("ema", "pristine")
              for name, content in _checkpoint_members(v2_checkpoint)]
    archive = tmp_path / "v3-large_224_1.0_float.tgz"
    archive.write_bytes(_archive(inside))
    url = "https://example.org/v3-large_224_1.0_float.tgz"
    manifest(v3={"url": url, "member": "v3-large_224_1.0_float/ema/resnet_v1_50.ckpt",
                 "format": "V2", "top5": None, "taken": "ema/: the averaged weights"})
    prefix = published.ensure("v3", archive=str(archive), log=lambda line: None)
    assert prefix.endswith(os.path.join("v3-large_224_1.0_float", "ema", "resnet_v1_50.ckpt"))
    assert published.get("v3").top5 is None and published.get("v3").taken
    manifest(v3={"url": url, "member": "v3-large_224_1.0_float/float/resnet_v1_50.ckpt",
                 "format": "V2"})
    with pytest.raises(CheckpointError) as error:
        published.ensure("v3", archive=str(archive), log=lambda line: None)
    print(error.value)
    assert "v3-large_224_1.0_float/pristine/resnet_v1_50.ckpt" in str(error.value)


def test_the_shipped_manifest_is_complete():
    """Every entry names a registered architecture and does not repeat what its registry
    entry holds (classes, size, preprocessing)."""
    from slimtune import registry

    with open(published.MANIFEST, encoding="utf-8") as f:
        rows = json.load(f)["checkpoints"]
    for row in rows:
        assert not {"num_classes", "image_size", "preprocessing"} & set(row), row["name"]
        assert row["architecture"] in registry.names(), row["name"]
    entries = published.manifest()
    assert {"resnet_v1_50", "inception_v3", "vgg_16", "densenet121",
            "mobilenet_v1_1.0_224", "inception_resnet_v2"} <= set(entries)
    # research/slim's 2016-2017 archives hold one V1 file; the MobileNet and DenseNet
    # ones a V2 prefix.
    assert {n for n, e in entries.items() if e.format == "V1"} == {
        "inception_v1", "inception_v2", "inception_v3", "inception_v4", "inception_resnet_v2",
        "resnet_v1_50", "resnet_v1_101", "resnet_v1_152", "resnet_v2_50", "resnet_v2_101",
        "resnet_v2_152", "vgg_16", "vgg_19"}
    for entry in entries.values():
        assert entry.format in ("V1", "V2"), entry.name
        assert entry.url.startswith(("http://", "https://")), entry.name
        # A member given by its path inside the archive says why it is the one taken.
        assert entry.member is None or "/" not in entry.member or entry.taken, entry.name
        assert 0 < entry.top1 < (entry.top5 or 100) <= 100, entry.name
        assert entry.num_classes in (10, 1000, 1001), entry.name


def test_a_wheel_install_ships_the_manifest_and_caches_in_the_home(tmp_path):
    """Built as a wheel (not the README's editable install), slimtune still finds the
    manifest, and downloads go to ~/.cache/slimtune/checkpoints, not site-packages."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    wheels, target, home = tmp_path / "wheels", tmp_path / "site", tmp_path / "home"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                          repo], check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = wheels.glob("slimtune-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    # The checkout's editable install would supply any package the wheel lacks, so the
    # probe also names every slimtune module it imported from outside the wheel.
    probe = ("import sys; from slimtune import published; "
             "print(published.__file__); print(published.MANIFEST); "
             "print(published.cache_root()); print(len(published.manifest())); "
             f"target = {str(target)!r}; "
             "print([n for n, m in sys.modules.items() if n.startswith('slimtune') "
             "and not (getattr(m, '__file__', None) or target).startswith(target)])")
    env = dict(os.environ, PYTHONPATH=str(target), HOME=str(home))
    env.pop("SLIMTUNE_CHECKPOINTS", None)
    lines = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, check=True,
                           capture_output=True, text=True).stdout.split()
    assert lines[0].startswith(str(target)), "the probe imported the checkout, not the wheel"
    assert lines[1] == str(target / "slimtune_checkpoints" / "manifest.json")
    assert lines[2] == str(home / ".cache" / "slimtune" / "checkpoints")
    assert int(lines[3]) == len(published.manifest())
    assert lines[4] == "[]", f"modules missing from the wheel: {lines[4:]}"
