"""The map of the code, in one place: which modules are commands, which may run
commands, and what every module and package is for, floor by floor from the scripts
down.

``tests/test_house_rules.py`` reads :data:`COMMANDS` and :data:`MAY_IMPORT_COMMANDS`
for its import rule and checks that every module of the package is on the map;
README's Layout table is rendered from :data:`ROOMS`
(``python -m slimtune.house README.md`` rewrites it, and a test fails when the two
differ).  Pure Python, below everything it describes.
"""

import sys

from slimtune import files

# One module per command, side by side on one floor; none imports another.
COMMANDS = ("train", "evaluate", "export", "convert", "verify", "doctor", "recalibrate",
            "launch")
# The only modules that run other commands: the main job and the engines' comparison.
MAY_IMPORT_COMMANDS = ("quickstart", "training_parity")

# (floor, where: paths under the repository, what).  A path ending in "/" is a package.
ROOMS = (
    ("scripts", ("tools/", "slimtune/cli.py"),
     "thin absl scripts, one per console script, and the flag plumbing they share; the "
     "logic lives in `slimtune/`"),
    ("main job, checks of commands", tuple(f"slimtune/{m}.py" for m in MAY_IMPORT_COMMANDS),
     "the only modules that run other commands: the main job, and the engines' training "
     "comparison (`slimtune-verify-training` runs the train command on each engine)"),
    ("commands", tuple(f"slimtune/{m}.py" for m in COMMANDS),
     "one command each, side by side (`launch.py` runs the training command as worker "
     "processes)"),
    ("engines", ("slimtune/slim_engine/", "slimtune/keras_engine/"),
     "TF1 graph training (`create_train_op` with `UPDATE_OPS`, per replica; warm start, "
     "session loop, final checks) and Keras 3 training with slim's semantics (TF1's "
     "optimizers and schedules, slim's BatchNorm arithmetic, moving averages)"),
    ("shared", ("slimtune/start_plan.py", "slimtune/outcome.py", "slimtune/distribute.py",
                "slimtune/preemption.py", "slimtune/schedule.py", "slimtune/precision.py"),
     "where a run starts (resume or warm start, the auxiliary head, precise BatchNorm), "
     "decided once for both engines, and what it ends with (its final weights by slim "
     "name); where the replicas are (cluster, per-worker dirs and "
     "locks, the settings check, the strategies, the cross-replica sum); SIGTERM/SIGINT "
     "while training; the step schedule both engines follow (saves, summaries, progress "
     "lines, the stop, NaN); the number format both engines compute in (mixed precision) "
     "and whether this machine has it"),
    ("checks", ("slimtune/checks/",),
     "what the doctor, verify, train and recalibrate look for: checkpoint, graph, Keras, "
     "statistics and data checks, the repair command they offer, and what train reports of "
     "them on its own run"),
    ("shared", ("slimtune/sources.py", "slimtune/forms.py", "slimtune/graph_outputs.py",
                "slimtune/slim_run.py", "slimtune/batch_statistics.py",
                "slimtune/recalibration.py", "slimtune/probe.py", "slimtune/upstream_export.py"),
     "what a model path is (slim checkpoint, `.keras`, frozen graph, SavedModel), the "
     "checkpoint prefix it stands for (archives, manifest names, moved train dirs) and the one "
     "Keras loader; open any model form as images-to-logits, and what a frozen graph's "
     "output is; build, "
     "restore and run a slim checkpoint graph; exact BatchNorm statistics, measured and "
     "written; where outputs "
     "go non-finite; research/slim's architecture-only export"),
    ("shared", ("slimtune/metadata.py",),
     "what a run is: `RunInfo`, resolved as flags, else `slimtune.json`, else the "
     "registry's defaults; the only module that knows `slimtune.json`'s keys"),
    ("shared", ("slimtune/checkpoint.py", "slimtune/checkpoint_values.py",
                "slimtune/published.py", "slimtune/download.py", "slimtune/cache.py"),
     "read, check and restore checkpoints, train dirs' state files; the values no "
     "working checkpoint holds; the manifest of published checkpoints; safe downloads and "
     "unpacking; where the cache lives"),
    ("shared", ("slimtune/testing.py",),
     "random slim checkpoints with realistic BatchNorm statistics, for tests and "
     "benchmarks"),
    ("registry", ("slimtune/registry.py",),
     "every architecture, one entry each: slim net and arg scope, Keras mirror, port "
     "table, end points, BN defaults, sizes, preprocessing. `register()` adds one"),
    ("nets", ("slimtune/nets/", "slimtune/keras_nets/", "slimtune/ports/"),
     "slim definitions (where tf-slim lacks them); Keras 3 mirrors built from plain "
     "arguments; port tables and the porter that checks them"),
    ("ground", ("slimtune/compat.py", "slimtune/files.py", "slimtune/progress.py",
                "slimtune/findings.py", "slimtune/compare.py", "slimtune/bn_layers.py",
                "slimtune/graphs.py", "slimtune/taps.py", "slimtune/stats.py", "slimtune/errors.py",
                "slimtune/data/", "slimtune/optim.py", "slimtune/house.py",
                "slimtune/__init__.py"),
     "the TF 2.21 fixes for tf-slim (the only module that knows TensorFlow/tf-slim "
     "internals); the one atomic write; the one logger and progress meter; the one "
     "vocabulary of findings; output differences; BatchNorm layers of any form; graph "
     "reading; the one Keras layer tap; the sign test; errors; datasets (research/slim's layouts too) and "
     "preprocessing; learning rates; this map"),
)


def on_the_map(path):
    """Whether ``path`` (relative to the repository, ``/``-separated) is in a room."""
    return any(path == where or (where.endswith("/") and path.startswith(where))
               for _, wheres, _ in ROOMS for where in wheres)


def layout_table():
    """README's Layout table, rendered from :data:`ROOMS`."""
    rows = ["| floor | where | what |", "|---|---|---|"]
    for floor, wheres, what in ROOMS:
        rows.append(f"| {floor} | {', '.join(f'`{w}`' for w in wheres)} | {what} |")
    return "\n".join(rows) + "\n"


def readme_with_table(text):
    """``text`` (README) with its Layout table replaced by :func:`layout_table`."""
    start = text.index("| floor | where | what |")
    end = text.index("\n\n", start) + 1
    return text[:start] + layout_table() + text[end:]


def main(argv):
    """``python -m slimtune.house README.md``: rewrite the README's Layout table."""
    if len(argv) != 2:
        print("usage: python -m slimtune.house README.md", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        text = f.read()
    files.write_text(argv[1], readme_with_table(text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
