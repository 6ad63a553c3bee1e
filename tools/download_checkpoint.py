"""Download a published slim checkpoint into the local cache, safely and once.

The manifest (checkpoints/manifest.json) lists every published checkpoint slimtune
knows: architecture (whose registry entry gives the classes, image size and
preprocessing), archive URL and published top-1/top-5.  This command downloads one with a progress line, checks its sha256 (the
published value, or the one recorded at the first download), unpacks it refusing
absolute paths, '..', links and device files, and prints the checkpoint prefix.  Run
again, it reuses the cache; an interrupted run leaves nothing behind.

Every tool's --checkpoint_path also takes a manifest name (downloaded on demand) or a
local .tar.gz, so this command is only needed to fetch ahead of time, to list, or to
bring in an archive fetched by hand (no network, or entries marked 'manual').

  slimtune-download --list
  slimtune-download --name=resnet_v1_50
  slimtune-download --name=densenet121 --archive=~/Downloads/tf-densenet121.tar.gz
  slimtune-train --checkpoint_path=resnet_v1_50 ...   # the same, on demand

Cache: checkpoints/cache in the repository, or $SLIMTUNE_CHECKPOINTS.
"""

from absl import flags

from slimtune import cli

F = flags
F.DEFINE_string("name", None, "Manifest entry to fetch, e.g. resnet_v1_50 (see --list).")
F.DEFINE_string("archive", None, "An archive already downloaded by hand: checked and "
                "unpacked instead of downloading.")
F.DEFINE_bool("list", False, "List the manifest: names, architectures, published accuracy, "
              "and whether each is in the cache.")


def main(argv):
    import os

    from slimtune import published, registry
    from slimtune.errors import UsageError

    values = flags.FLAGS
    if values.list:
        cache = published.cache_root()
        print(f"{'name':36} {'architecture':32} {'top-1':>6} {'top-5':>6}  size  cached  "
              "slimtune")
        known = set(registry.names())
        for name, entry in sorted(published.manifest().items()):
            cached = os.path.isfile(os.path.join(cache, name, "download.json"))
            note = "yes" if entry.architecture in known else "not yet"
            if entry.manual:
                note += " (manual download)"
            size = f"{entry.image_size:4d}" if entry.architecture in known else "   -"
            top5 = "     -" if entry.top5 is None else f"{entry.top5:6.2f}"
            if entry.taken:
                note += f"; takes {entry.member or 'its only checkpoint'}"
            print(f"{name:36} {entry.architecture:32} {entry.top1:6.2f} {top5}  "
                  f"{size}  {'yes' if cached else 'no':6}  {note}")
        print(f"cache: {cache}")
        return
    if not values.name:
        raise UsageError("no checkpoint named: pass --name=<manifest entry> (see --list)")
    prefix = published.ensure(values.name, archive=values.archive and
                              os.path.expanduser(values.archive))
    print(prefix)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
