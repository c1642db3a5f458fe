"""Ray Train (V2) around the plain-torch loop, for any training task: TorchTrainer, per-epoch checkpoints,
resume after a worker crash or a retried run, failures."""

import copy
import logging
import math
import os
import resource
import tempfile
import threading

import pyarrow.fs as pafs
import ray
import ray.train
import ray.train.torch
import torch
from ray.data import DataContext
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from ray.util.queue import Queue

from socialfeat import artifacts, console
from socialfeat.config import TrainingConfig
from socialfeat.training.loop import epoch_report, evaluate, make_optimizer, train_one_epoch, warmup_cosine
from socialfeat.vision.backbones import backbone

log = logging.getLogger(__name__)
STATE = "state.pt"
PID_FILE = "worker-{rank}.pid"  # where each worker says which process it is (operators, failure tests)


class _Trainer(TorchTrainer):
    """A TorchTrainer that leaves Ctrl-C to Python: a KeyboardInterrupt in the driver's wait, which the CLI
    answers by stopping Ray. Ray Train 2.60 called from the main thread installs a SIGINT handler for the
    rest of the process that aborts the controller and may sys.exit(0)."""

    def _register_sigint_handler(self, controller) -> None:
        pass


def _fit_interruptibly(trainer: _Trainer, poll=None):
    """trainer.fit() in this thread, with `poll` (the progress bar) called twice a second meanwhile from a
    helper thread that is stopped and joined before this returns or raises.

    fit runs here, never in a helper, so an interrupt finds no other thread of the driver inside a Ray call:
    ray.shutdown() frees the core worker such a call still uses, and the process dies of SIGSEGV."""
    if poll is None:  # no bar: a Tune trial, or a run without one
        return trainer.fit()
    stop = threading.Event()
    poller = threading.Thread(target=_poll_until, args=(poll, stop), name="train-progress", daemon=True)
    poller.start()
    try:
        return trainer.fit()
    finally:
        stop.set()
        poller.join()


def _poll_until(poll, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        try:
            poll()
        except ray.exceptions.RayError:  # the queue's actor is gone (Ray stopping): nothing more to show
            return


def load_state(path: str) -> dict:
    """A training checkpoint: tensors and plain values only, loaded without running any code."""
    return artifacts.load_tensors(path)


def _latest_on_disk(checkpoint_root: str) -> dict | None:
    """The newest complete checkpoint under `checkpoint_root` (a local path or a storage URI), when Ray's
    controller hands none over: a worker killed right after persisting a checkpoint can die before the
    controller registers it, and a retried run starts a new controller."""

    filesystem, root = pafs.FileSystem.from_uri(checkpoint_root)
    entries = filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    directories = [
        e.path for e in entries if e.type == pafs.FileType.Directory and e.base_name.startswith("checkpoint_")
    ]
    states = []
    for directory in directories:
        try:
            with ray.train.Checkpoint(directory, filesystem=filesystem).as_directory() as local:
                states.append(load_state(os.path.join(local, STATE)))
        except (OSError, artifacts.UnsafeFile) as error:  # load_tensors reports a torn file as UnsafeFile
            log.warning("skipping checkpoint %s: %s", directory, error)  # partly written, or not plain tensors
            continue
    return max(states, key=lambda state: state["epoch"], default=None)


def _restore(model, optimizer, scheduler, checkpoint_root: str) -> tuple[int, list]:
    """Load the newest checkpoint of this run, if it has one: (first epoch to run, history so far). The
    controller's checkpoint and the newest on disk can differ: a controller restored after its trial's
    process was killed hands over the last one it had recorded (Ray 2.60), which may be epochs old."""

    candidates = [_latest_on_disk(checkpoint_root)]
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            candidates.append(load_state(os.path.join(directory, STATE)))
    state = max((c for c in candidates if c is not None), key=lambda c: c["epoch"], default=None)
    if state is None:
        return 0, []
    getattr(model, "module", model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state.get("rng"))
    log.info("resuming from the checkpoint of epoch %d", state["epoch"] + 1)
    return state["epoch"] + 1, state["history"]


def _rng_states() -> list[dict]:
    """Every rank's torch generator states: crops, flips and dropout draw from them, so a run resumed from
    this checkpoint draws what an unbroken run would have drawn (one all-gather, on every rank)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    if not torch.distributed.is_initialized():
        return [state]
    states = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, state)
    return states


def _set_rng_state(states: list[dict] | None) -> None:
    """This rank's generators as the checkpoint left them (checkpoints of another world size start fresh)."""
    context = ray.train.get_context()
    if not states or len(states) != context.get_world_size():
        return
    mine = states[context.get_world_rank()]
    torch.set_rng_state(mine["cpu"])
    if "cuda" in mine and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["cuda"])


def _save_and_report(metrics: dict, state: dict) -> None:

    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(state, os.path.join(directory, STATE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def _write_pid(pid_dir: str, rank: int) -> None:
    os.makedirs(pid_dir, exist_ok=True)  # on another node the driver's directory does not exist
    with open(os.path.join(pid_dir, PID_FILE.format(rank=rank)), "w") as handle:
        handle.write(str(os.getpid()))


def worker_loop(config: dict) -> None:
    """The per-worker training function: plain torch steps of the task over this worker's shard."""

    cfg, task = TrainingConfig(**config["training"]), config["task"]
    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    _write_pid(config["pid_dir"], rank)
    torch.set_num_threads(max(1, round(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed + rank)
    device = ray.train.torch.get_device()
    model = task.build(*backbone(cfg.model))
    if config["initial"] is not None:  # a later pseudo-class round: the previous round's tower, a fresh head
        model.load_state_dict(config["initial"], strict=False)
    model = ray.train.torch.prepare_model(model)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.learning_rate, cfg.weight_decay, cfg.momentum)
    steps = max(1, math.ceil(config["train_rows"] / (cfg.batch_size * world)))
    scheduler = warmup_cosine(optimizer, cfg.warmup_epochs * steps, cfg.epochs * steps)
    start, history = _restore(model, optimizer, scheduler, config["checkpoint_root"])
    train_shard, holdout_shard = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("holdout")
    for epoch in range(start, cfg.epochs):
        batches = train_shard.iter_torch_batches(
            batch_size=cfg.batch_size, local_shuffle_buffer_size=4 * cfg.batch_size, local_shuffle_seed=cfg.seed + epoch
        )
        train = train_one_epoch(model, task, batches, optimizer, scheduler, device, cfg.crop_size)
        held = evaluate(
            model, task, holdout_shard.iter_torch_batches(batch_size=2 * cfg.batch_size), device, cfg.crop_size
        )
        metrics = epoch_report(epoch + 1, train, held, task, resumed=start > 0) | {
            "started_at_epoch": start,
            "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        }
        history.append(metrics)
        state = {
            "model": getattr(model, "module", model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "history": history,
            "rng": _rng_states(),
        }
        _save_and_report(metrics, state)


def _tune_callbacks(tune_objectives: tuple[str, ...] | None) -> list:
    """Inside a sweep trial, forward every epoch's report to Tune (ASHA stops trailing trials on them)."""
    if tune_objectives is None:
        return []

    class EpochReports(TuneReportCallback):
        """Per-epoch reports carry the trial's objectives as NaN: Tune requires every metric the searcher
        optimises in every result (Ray 2.60), and the objectives exist only once the trial has evaluated."""

        def after_report(self, run_context, metrics, checkpoint):
            padded = [{name: math.nan for name in tune_objectives} | m for m in metrics]
            super().after_report(run_context, padded, checkpoint)

    return [EpochReports()]


class _EpochProgress:
    """A bar over training epochs on the driver, with the loss: the controller puts each epoch's report
    into a Ray queue (workers' reports reach the driver only when fit returns, Ray Train 2.60)."""

    def __init__(self, epochs: int):

        self.queue = Queue(actor_options={"num_cpus": 0})
        self.bar = console.bar(epochs, "training", True, unit="epoch")

    def callback(self):

        queue = self.queue

        class ToQueue(UserCallback):
            def after_report(self, run_context, metrics, checkpoint):
                queue.put_nowait({k: metrics[0][k] for k in ("epoch", "train_loss", "holdout_loss")})

        return ToQueue()

    def poll(self) -> None:
        while not self.queue.empty():
            report = self.queue.get_nowait()
            self.bar.update(report["epoch"] - self.bar.n)
            self.bar.set_postfix(loss=f"{report['train_loss']:.3f}", holdout=f"{report['holdout_loss']:.3f}")

    def close(self) -> None:

        self.bar.close()
        ray.kill(self.queue.actor)


def _ordered_ingest():
    """Ray Data's ingest options with blocks delivered in dataset order: the streaming executor otherwise
    hands a worker whichever block finishes first, so the same seed trained different models run to run
    (Ray 2.60). The seeded local shuffle then gives every epoch its own, reproducible order."""

    # the context's own options, as DataConfig.default_ingest_options() takes them, copied whole: that
    # method passes exclude_resources on, which Ray 2.60 warns of as deprecated on every run
    options = copy.deepcopy(DataContext.get_current().execution_options)
    options.preserve_order = True
    return options


def fit(
    train_ds,
    holdout_ds,
    task,
    cfg: TrainingConfig,
    train_rows: int,
    checkpoints: str,
    name: str,
    tune_objectives: tuple[str, ...] | None = None,
    progress: bool = False,
    initial: dict | None = None,
) -> tuple[dict, list]:
    """Train `task` with a TorchTrainer; returns (final training state, per-epoch history).

    Checkpoints go to `checkpoints`/`name` (a local path or a storage URI every worker reaches); a later
    call with the same place resumes from the newest one there. `tune_objectives`: inside a Tune trial,
    the metrics its searcher optimises (every epoch is then reported to Tune). `progress`: a bar over the
    epochs (from the main thread only: a Tune trial has its own reporting). `initial`: weights to start
    from (a subset of the model's state dict; a checkpoint to resume from takes precedence)."""

    bar = _EpochProgress(cfg.epochs) if progress and threading.current_thread() is threading.main_thread() else None
    pid_dir = checkpoints if "://" not in checkpoints else tempfile.mkdtemp(prefix="socialfeat-pids-")
    trainer = _Trainer(
        worker_loop,
        train_loop_config={
            "training": cfg.model_dump(),
            "task": task,
            "train_rows": train_rows,
            "pid_dir": pid_dir,
            "checkpoint_root": f"{checkpoints.rstrip('/')}/{name}",
            "initial": initial,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker},
            placement_strategy=cfg.placement,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=checkpoints,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=_tune_callbacks(tune_objectives) + ([bar.callback()] if bar else []),
        ),
        datasets={"train": train_ds, "holdout": holdout_ds},
        dataset_config=DataConfig(execution_options=_ordered_ingest()),
    )
    try:
        result = _fit_interruptibly(trainer, bar and bar.poll)
    finally:
        if bar:
            bar.close()
    with result.checkpoint.as_directory() as directory:
        state = load_state(os.path.join(directory, STATE))
    return state, state["history"]
