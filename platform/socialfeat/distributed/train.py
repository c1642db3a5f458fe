"""Ray Train (V2) around the plain-torch loop: TorchTrainer, per-epoch checkpoints, resume, failures."""
import logging
import math
import os
import tempfile

import torch

from socialfeat.config import TrainingConfig

log = logging.getLogger(__name__)
STATE = "state.pt"
PID_FILE = "worker-{rank}.pid"  # where each worker says which process it is (operators, failure tests)


def _latest_on_disk(checkpoint_root: str) -> dict | None:
    """The newest complete checkpoint this run wrote, when Ray's controller hands none over (a worker
    killed right after persisting a checkpoint can die before the controller registers it).
    `checkpoint_root` is a local path or a storage URI."""
    import pyarrow.fs as pafs
    import ray.train

    filesystem, root = pafs.FileSystem.from_uri(checkpoint_root)
    entries = filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    directories = [e.path for e in entries if e.type == pafs.FileType.Directory and e.base_name.startswith("checkpoint_")]
    for directory in sorted(directories, reverse=True):
        try:
            with ray.train.Checkpoint(directory, filesystem=filesystem).as_directory() as local:
                return torch.load(os.path.join(local, STATE), map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError):
            continue  # partly written: try the one before
    return None


def _restore(model, optimizer, scheduler, checkpoint_root: str) -> tuple[int, list]:
    """Load the last checkpoint, if this run has one: (first epoch to run, history so far)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(os.path.join(directory, STATE), map_location="cpu", weights_only=False)
    else:
        state = _latest_on_disk(checkpoint_root)
        if state is None:
            return 0, []
    getattr(model, "module", model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    log.info("resuming from the checkpoint of epoch %d", state["epoch"] + 1)
    return state["epoch"] + 1, state["history"]


def _save_and_report(metrics: dict, state: dict) -> None:
    import ray.train

    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(state, os.path.join(directory, STATE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def worker_loop(config: dict) -> None:
    """The per-worker training function: plain torch steps over this worker's shard of the data."""
    import ray.train
    import ray.train.torch

    from socialfeat.training.loop import evaluate, make_optimizer, train_one_epoch, warmup_cosine
    from socialfeat.vision.backbones import build

    cfg = TrainingConfig(**config["training"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    os.makedirs(config["pid_dir"], exist_ok=True)  # on another node the driver's directory does not exist
    with open(os.path.join(config["pid_dir"], PID_FILE.format(rank=rank)), "w") as handle:
        handle.write(str(os.getpid()))
    torch.set_num_threads(max(1, round(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed + rank)
    device = ray.train.torch.get_device()
    model = ray.train.torch.prepare_model(build(cfg.model, config["num_outputs"]))
    optimizer = make_optimizer(model, cfg.optimizer, cfg.learning_rate, cfg.weight_decay, cfg.momentum)
    steps = max(1, math.ceil(config["train_rows"] / (cfg.batch_size * world)))
    scheduler = warmup_cosine(optimizer, cfg.warmup_epochs * steps, cfg.epochs * steps)
    weights = None if config["class_weights"] is None else torch.tensor(config["class_weights"], device=device)
    # uniform guessing over K pseudo classes scores ln K; regression targets have no such yardstick
    chance_loss = math.log(max(config["num_outputs"], 2)) if cfg.objective == "pseudo_class" else 1.0
    start, history = _restore(model, optimizer, scheduler, config["checkpoint_root"])
    train_shard, holdout_shard = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("holdout")
    for epoch in range(start, cfg.epochs):
        batches = train_shard.iter_torch_batches(batch_size=cfg.batch_size, local_shuffle_buffer_size=4 * cfg.batch_size,
                                                 local_shuffle_seed=cfg.seed + epoch)
        train = train_one_epoch(model, batches, optimizer, scheduler, device, cfg.crop_size, cfg.objective, weights)
        held = evaluate(model, holdout_shard.iter_torch_batches(batch_size=2 * cfg.batch_size), device,
                        cfg.crop_size, cfg.objective)
        metrics = {"epoch": epoch + 1, "train_loss": train["loss"], "train_top1": train["top1"],
                   "holdout_loss": held["loss"], "holdout_loss_vs_chance": held["loss"] / chance_loss,
                   "holdout_top1": held["top1"], "holdout_top5": held["top5"],
                   "resumed": start > 0}
        history.append(metrics)
        state = {"model": getattr(model, "module", model).state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "epoch": epoch, "config": config["training"],
                 "num_outputs": config["num_outputs"], "history": history}
        _save_and_report(metrics, state)


def _tune_callbacks() -> list:
    """Inside a sweep trial, forward every epoch's report to Tune (ASHA stops trailing trials on them)."""
    from ray.tune.trainable.trainable_fn_utils import _in_tune_session

    if not _in_tune_session():
        return []
    from ray.tune.integration.ray_train import TuneReportCallback

    return [TuneReportCallback()]


def fit_cnn(train_ds, holdout_ds, cfg: TrainingConfig, num_outputs: int, train_rows: int, class_weights,
            storage: str, name: str, checkpoints: str | None = None) -> tuple[dict, list]:
    """Train with a TorchTrainer; returns (final training state, per-epoch history). Checkpoints go to
    `checkpoints` (a storage URI: multi-node training needs storage every worker reaches) or `storage`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    os.makedirs(storage, exist_ok=True)
    checkpoints = checkpoints or storage
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"training": cfg.model_dump(), "num_outputs": num_outputs, "train_rows": train_rows,
                           "class_weights": class_weights, "pid_dir": storage,
                           "checkpoint_root": f"{checkpoints.rstrip('/')}/{name}"},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_path=checkpoints, failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2), callbacks=_tune_callbacks()),
        datasets={"train": train_ds, "holdout": holdout_ds})
    result = trainer.fit()
    with result.checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, STATE), map_location="cpu", weights_only=False)
    return state, state["history"]
