"""Where a training run's replicas are: one device, several local devices, or several
workers; shared by both training engines and by slimtune-launch.

A multi-worker run is data parallel on ``tf.distribute``'s collective all-reduce: every
worker holds a full copy of the model, trains on its own share of the data and adds its
gradients to the others' each step.  The cluster comes from ``--worker_hosts=h0:p0,h1:p1
--task=i`` or from a ``TF_CONFIG`` environment variable (the convention of Kubernetes
TFJob, Vertex AI and SageMaker)::

    {"cluster": {"worker": ["h0:p0", "h1:p1"]}, "task": {"type": "worker", "index": 1}}

Worker 0 is the chief: it writes ``--train_dir``; worker ``i`` writes its own copy of the
checkpoints to ``<train_dir>/worker_<i>`` (every worker must take part in every save).
``--num_clones=K`` trains K replicas on one machine's devices instead.  Parameter
servers are not supported.

Everything TensorFlow-specific here creates the strategy; it must run before any other
TensorFlow op of the process (collective ops are configured at program start-up).
"""

import contextlib
import dataclasses
import fcntl
import json
import os
import socket

from slimtune.errors import DataError, UsageError, WorkerLost

TF_CONFIG = "TF_CONFIG"
LOCK_FILE = ".slimtune-worker.lock"
SUPPORTED = ("train data-parallel on several workers instead: --worker_hosts=h0:p0,h1:p1 "
             "--task=i on each machine (or a TF_CONFIG), or slimtune-launch --num_workers=N "
             "on one machine")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The workers of a multi-worker run and which of them this process is."""

    workers: tuple  # "host:port" of every worker, worker 0 (the chief) first
    task: int
    source: str  # where it came from: "--worker_hosts" or "TF_CONFIG"

    @property
    def num_workers(self):
        return len(self.workers)

    @property
    def is_chief(self):
        return self.task == 0

    def own_dir(self, train_dir):
        """The directory this worker writes: ``train_dir`` for the chief, else
        ``train_dir/worker_<task>``."""
        return train_dir if self.is_chief else os.path.join(train_dir, f"worker_{self.task}")


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the replicas of one run are: ``cluster`` (None: one machine) and
    ``num_clones`` replicas per worker."""

    cluster: Cluster = None
    num_clones: int = 1
    clone_on_cpu: bool = False

    @property
    def num_workers(self):
        return self.cluster.num_workers if self.cluster else 1

    @property
    def task(self):
        return self.cluster.task if self.cluster else 0

    @property
    def num_replicas(self):
        return self.num_workers * self.num_clones

    @property
    def distributed(self):
        return self.num_replicas > 1

    @property
    def is_chief(self):
        return self.cluster is None or self.cluster.is_chief

    def own_dir(self, train_dir):
        return self.cluster.own_dir(train_dir) if self.cluster else train_dir

    def describe(self):
        if self.cluster:
            return (f"worker {self.task} of {self.num_workers} ({self.cluster.source}, "
                    f"{self.cluster.workers[self.task]})")
        return f"{self.num_clones} local replicas" if self.num_clones > 1 else "one device"


def tf_config(workers, index):
    """The ``TF_CONFIG`` value of worker ``index`` of ``workers``."""
    return json.dumps({"cluster": {"worker": list(workers)},
                       "task": {"type": "worker", "index": index}})


def _parse_hosts(worker_hosts):
    hosts = tuple(h.strip() for h in worker_hosts.split(",") if h.strip())
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise UsageError(f"--worker_hosts: {host!r} is not host:port; give every worker "
                             "as host:port, comma-separated, worker 0 (the chief) first")
    if len(set(hosts)) != len(hosts):
        raise UsageError(f"--worker_hosts={worker_hosts} names a worker twice: every worker "
                         "needs its own host:port")
    return hosts


def _from_tf_config(text):
    """The Cluster a TF_CONFIG describes: its ``chief`` (if any) then its ``worker``s."""
    try:
        config = json.loads(text)
        jobs, task = config["cluster"], config.get("task", {})
        kind, index = task.get("type", "worker"), int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UsageError(f"TF_CONFIG is not valid ({e}): set it to "
                         '{"cluster": {"worker": ["h0:p0", "h1:p1"]}, '
                         '"task": {"type": "worker", "index": i}}') from None
    others = sorted(set(jobs) - {"chief", "worker"})
    if others or kind not in ("chief", "worker"):
        raise UsageError(f"TF_CONFIG has {', '.join(others) or 'task type ' + kind} jobs: "
                         "slimtune trains with workers only (no parameter servers or "
                         "evaluators); list every machine under cluster.worker")
    chiefs, workers = list(jobs.get("chief", [])), list(jobs.get("worker", []))
    hosts = tuple(chiefs + workers)
    position = index if kind == "chief" else len(chiefs) + index
    if not hosts or not 0 <= position < len(hosts):
        raise UsageError(f"TF_CONFIG: task {kind} {index} is not in its cluster of "
                         f"{len(hosts)} workers: set task.index to 0..{len(hosts) - 1}")
    return Cluster(hosts, position, TF_CONFIG)


def cluster_from(worker_hosts=None, task=0, worker_replicas=1, environ=None):
    """The Cluster of this process (None: a one-machine run), from the research/slim
    flags or, without them, from ``TF_CONFIG``."""
    environ = os.environ if environ is None else environ
    if worker_hosts:
        hosts = _parse_hosts(worker_hosts)
        if not 0 <= task < len(hosts):
            raise UsageError(f"--task={task} is not a worker of --worker_hosts "
                             f"({len(hosts)} workers): use --task=0..{len(hosts) - 1}")
        cluster = Cluster(hosts, task, "--worker_hosts")
    elif environ.get(TF_CONFIG):
        cluster = _from_tf_config(environ[TF_CONFIG])
    elif worker_replicas > 1 or task != 0:
        raise UsageError(f"--worker_replicas={worker_replicas} --task={task} needs the workers' "
                         "addresses: add --worker_hosts=h0:p0,h1:p1,... (the same on every "
                         "worker) or set TF_CONFIG")
    else:
        return None
    if worker_replicas not in (1, cluster.num_workers):
        raise UsageError(f"--worker_replicas={worker_replicas} but the cluster has "
                         f"{cluster.num_workers} workers ({cluster.source}): drop "
                         "--worker_replicas or make it match")
    return cluster if cluster.num_workers > 1 else None


def placement(cfg, environ=None):
    """The Placement the research/slim deployment flags of ``cfg`` ask for; parameter
    servers and the queue-era replica flags are refused, naming the supported way."""
    if cfg.num_ps_tasks > 0:
        raise UsageError(f"--num_ps_tasks={cfg.num_ps_tasks}: parameter servers are not "
                         f"supported (deprecated, nondeterministic); {SUPPORTED}")
    if cfg.num_clones < 1:
        raise UsageError(f"--num_clones={cfg.num_clones} must be 1 or more")
    cluster = cluster_from(cfg.worker_hosts, cfg.task, cfg.worker_replicas, environ)
    if cluster and cfg.num_clones > 1:
        raise UsageError(f"--num_clones={cfg.num_clones} with {cluster.num_workers} workers: "
                         "run one worker per device instead (each with --num_clones=1)")
    return Placement(cluster, cfg.num_clones, cfg.clone_on_cpu)


def lock_dir(directory, placement_):
    """Hold ``directory`` for this worker until the process ends (an open file with an
    exclusive lock, released by the system however the process ends); another process
    already writing it is refused.  Returns the open lock file (keep a reference)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_FILE)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UsageError(f"{directory} is already written by {holder}: every worker needs "
                         "its own train dir (stop that process, or use another --train_dir)"
                         ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{placement_.describe()}, pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle


def free_ports(count, host="127.0.0.1"):
    """``count`` TCP ports free on ``host`` right now (bound to port 0, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# -- agreeing on the run: every worker must be started with the same settings ----------
ROW_BYTES = 4096


def settings_rows(settings, placement_):
    """This worker's ``settings`` (a JSON-able dict) as its row of a
    ``[workers, ROW_BYTES]`` float32 matrix, the other rows zero: summed over the workers
    (one all-reduce), every worker holds every worker's settings."""
    import numpy as np

    data = json.dumps(settings, sort_keys=True).encode()
    if len(data) > ROW_BYTES:
        raise UsageError(f"internal: the run's settings take {len(data)} bytes, more than "
                         f"{ROW_BYTES}")
    rows = np.zeros([placement_.num_workers, ROW_BYTES], np.float32)
    rows[placement_.task, :len(data)] = np.frombuffer(data, np.uint8)
    return rows


def settings_of_rows(rows):
    """Every worker's settings from the summed rows."""
    import numpy as np

    out = []
    for row in rows:
        data = np.round(row).astype(np.uint8).tobytes().rstrip(b"\0")
        out.append(json.loads(data.decode()))
    return out


# The flags that make a run what it is: every worker must be given the same.
RUN_FLAGS = ("model_name", "batch_size", "max_number_of_steps", "labels_offset", "seed",
             "checkpoint_path", "checkpoint_exclude_scopes", "trainable_scopes",
             "weight_decay", "optimizer", "learning_rate", "learning_rate_decay_type",
             "learning_rate_decay_factor", "num_epochs_per_decay", "label_smoothing",
             "moving_average_decay", "clip_gradient_norm", "freeze_batch_norm",
             "dataset_name", "dataset_split_name", "deterministic", "engine",
             "sync_batch_norm", "mixed_precision")


def run_settings(cfg, run, placement_, **extra):
    """What this worker compares with the others: the run's flags, the resolved
    architecture settings (classes, image size, BatchNorm), ``extra`` (such as the step
    it resumes from), and the host and directory it writes."""
    bn = run.batch_norm
    settings = {key: getattr(cfg, key) for key in RUN_FLAGS if hasattr(cfg, key)}
    settings.update(
        num_classes=run.num_classes, image_size=run.image_size,
        preprocessing=run.preprocessing,
        batch_norm=None if bn is None else f"decay {bn.decay} epsilon {bn.epsilon} "
                                           f"scale {bn.scale} mode {bn.mode}",
        host=socket.gethostname(), dir=os.path.realpath(placement_.own_dir(cfg.train_dir)),
        **extra)
    return settings


# Compared by resume_step_everyone_holds, not as a flag.
CHECKPOINT_STEPS = "checkpoint_steps"


def resume_step_everyone_holds(everyone):
    """None when every worker resumes from the same step; else the last step of which
    every worker holds a checkpoint (listed in ``CHECKPOINT_STEPS``), the step to resume
    from after a worker stopped during a save (it kept the save before).  Raises
    UsageError, naming each worker's steps and dir, when no step is held by all."""
    if len({worker.get("resume_step") for worker in everyone}) <= 1:
        return None
    held = set.intersection(*(set(worker.get(CHECKPOINT_STEPS, ())) for worker in everyone))
    if held:
        return max(held)
    listing = "; ".join(f"worker {i}: steps {worker.get(CHECKPOINT_STEPS)} in {worker['dir']}"
                        for i, worker in enumerate(everyone))
    raise UsageError(f"the workers hold no checkpoint of a common step ({listing}): copy "
                     "one step's checkpoint (model.ckpt-N.* and the checkpoint file) into "
                     "every worker's dir, or move every worker's checkpoints aside to start "
                     "again")


def settle(everyone, placement_, train_dir, roll_back):
    """After the exchange: refuse a run whose workers were started with other settings,
    and roll this worker's ``train_dir`` back (``roll_back(train_dir, step)``) when the
    workers would resume from different steps (one stopped during a save), asking for a
    restart."""
    step = resume_step_everyone_holds(everyone)
    if step is not None:
        # The input already starts at this worker's own step: roll back, start again.
        roll_back(train_dir, step)
        steps = ", ".join(f"worker {i} step {worker['resume_step']}"
                          for i, worker in enumerate(everyone))
        raise UsageError(
            f"the workers would resume from different checkpoints ({steps}): a worker "
            f"stopped during a save. {train_dir} now resumes from step {step}, the last "
            "one every worker holds: start every worker again with the same commands")
    check_same_settings(everyone, placement_.task)


def check_same_settings(everyone, task):
    """Refuse a run whose workers were started with different settings (naming both
    values) or write the same directory."""
    mine = everyone[task]
    for other, theirs in enumerate(everyone):
        if other == task:
            continue
        if (theirs.get("host"), theirs.get("dir")) == (mine.get("host"), mine.get("dir")):
            raise UsageError(f"workers {min(task, other)} and {max(task, other)} both write "
                             f"{mine['dir']} on {mine['host']}: every worker needs its own "
                             "train dir (check --task / TF_CONFIG task.index)")
        for key in sorted(set(mine) | set(theirs)):
            if key in ("host", "dir", CHECKPOINT_STEPS):
                continue
            if mine.get(key) != theirs.get(key):
                raise UsageError(
                    f"{key} differs between workers: worker {task} (this one) has "
                    f"{mine.get(key)!r}, worker {other} has {theirs.get(key)!r}: start every "
                    "worker with the same flags (and restart all of them from the same "
                    "checkpoints)")


def replica_split(split, replica, count):
    """The share of ``split`` (a ``pipeline.Split``) replica ``replica`` of ``count``
    reads: its shard files ``replica, replica + count, ...`` (FILE sharding)."""
    if count > 1 and len(split.files) < count:
        raise DataError(f"{split.dataset_dir} has {len(split.files)} {split.split} shard "
                        f"files for {count} replicas: each replica reads its own files, so "
                        f"write the split as {count} or more shards")
    return dataclasses.replace(split, files=split.files[replica::count])


@contextlib.contextmanager
def peers_guard(placement, step, train_dir):
    """Inside, a multi-worker run that loses a peer (it stopped, or its machine went
    away) stops with a :class:`WorkerLost` error saying how to resume."""
    import tensorflow as tf

    lost = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError)
    try:
        yield
    except lost as e:
        if placement.cluster is None:
            raise
        kept = tf.train.latest_checkpoint(train_dir) or "the start"
        cause = " ".join(e.message.split())[:200]
        raise WorkerLost(
            f"worker {placement.task} lost the other workers after step {step} "
            f"({type(e).__name__}: {cause}): a worker stopped or cannot be reached; start "
            f"every worker again with the same commands to resume from {kept}") from None



# -- TensorFlow: the strategies ------------------------------------------------------------
def sum_over_replicas(value):
    """Inside a replica: ``value`` summed over every replica of the run (all workers, all
    clones), for both engines (the workers' settings exchange, the wishes each step
    carries).  ``tf.identity`` first puts a value fed from outside the replica (a
    placeholder, a constant) on the replica's device, which the all-reduce needs."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(value))


def slim_strategy(placement_):
    """The ``tf.compat.v1`` strategy of a graph-mode (slim engine) run, or None for one
    device.  Creates it, so call it before any other TensorFlow op runs."""
    import tensorflow as tf

    v1 = tf.compat.v1
    _clones_on_cpu(placement_)
    if placement_.cluster:
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({"worker": list(placement_.cluster.workers)}),
            task_type="worker", task_id=placement_.task, rpc_layer="grpc")
        return v1.distribute.experimental.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver)
    if placement_.num_clones > 1:
        return v1.distribute.MirroredStrategy(_local_devices(placement_))
    return None


def keras_strategy(placement_):
    """The TF2 strategy of a Keras-engine run (``tf.distribute.MultiWorkerMirroredStrategy``
    or ``MirroredStrategy`` over --num_clones local devices), or None for one device.
    Creates it, so call it before any other TensorFlow op runs."""
    import tensorflow as tf

    _clones_on_cpu(placement_)
    if placement_.cluster:
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({"worker": list(placement_.cluster.workers)}),
            task_type="worker", task_id=placement_.task, rpc_layer="grpc")
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if placement_.num_clones > 1:
        return tf.distribute.MirroredStrategy(_local_devices(placement_))
    return None


def _clones_on_cpu(placement_):
    """--clone_on_cpu: this process's GPUs are hidden, so its clone(s) and everything
    else of the run go on the CPU (research/slim put the clones there), one clone too."""
    import tensorflow as tf

    if not placement_.clone_on_cpu or not tf.config.list_physical_devices("GPU"):
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        raise UsageError("--clone_on_cpu has to take effect before TensorFlow uses a GPU: "
                         "run the training in a new process") from None


def _local_devices(placement_):
    """K GPUs when there are K (and --clone_on_cpu is off), else K logical CPUs."""
    import tensorflow as tf

    count = placement_.num_clones
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= count and not placement_.clone_on_cpu:
        return [f"/gpu:{i}" for i in range(count)]
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    return [f"/cpu:{i}" for i in range(count)]


def session_target(placement_):
    """The ``Session`` target of a graph-mode run: this worker's own server."""
    return f"grpc://{placement_.cluster.workers[placement_.task]}" if placement_.cluster else ""
