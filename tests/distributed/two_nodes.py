"""Two Ray nodes on this machine (ray.cluster_utils.Cluster): `socialfeat run` joins them, and with --kill the
worker node is killed once training has checkpointed and a replacement joins, as an autoscaler would add one.
With --reference, an unkilled run into that directory comes first, on the same nodes, and the --out run starts
from its --reuse stages (copied in storage). Prints one JSON line: each run's exit status and output, and what
was done to the nodes when."""

import argparse
import json
import subprocess
import sys
import tempfile
import time

import pyarrow.fs as pafs
from ray.cluster_utils import Cluster

NODE = {"num_cpus": 1, "object_store_memory": 200 * 1024**2}
HEAD = {"num_cpus": 2, "object_store_memory": 300 * 1024**2, "include_dashboard": False}


def checkpoints(uri: str) -> list[str]:
    """Ray Train's checkpoint directories anywhere under `uri`."""
    filesystem, root = pafs.FileSystem.from_uri(uri)
    found = filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return [i.path for i in found if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]


def kill_after_first_checkpoint(cluster: Cluster, worker, out: str, run: subprocess.Popen) -> dict:
    """Kill `worker` (every process of the node, no grace) once a checkpoint exists; add a replacement."""
    while run.poll() is None and not checkpoints(f"{out}/checkpoints"):
        time.sleep(0.3)
    if run.poll() is not None:
        return {"killed": False}
    cluster.remove_node(worker, allow_graceful=False)
    killed_at = time.time()
    time.sleep(2.0)  # training notices the loss and waits for a node its placement allows
    cluster.add_node(**NODE)
    return {"killed": True, "checkpoints_at_kill": len(checkpoints(f"{out}/checkpoints")), "killed_at": killed_at}


def copy_stages(source: str, destination: str, names: list[str]) -> None:
    """The completed stages called `names` of the run in `source`, copied into the run in `destination`."""
    filesystem, root = pafs.FileSystem.from_uri(f"{source}/stages")
    _, target = pafs.FileSystem.from_uri(f"{destination}/stages")
    for stage in filesystem.get_file_info(pafs.FileSelector(root)):
        if stage.base_name.rsplit("-", 1)[0] in names:
            pafs.copy_files(stage.path, f"{target}/{stage.base_name}", filesystem, filesystem)


def run(cluster: Cluster, worker, args, *, out: str, kill: bool) -> dict:
    """One `socialfeat run` into `out` on the cluster, the worker node killed mid-training with `kill`."""
    command = [args.socialfeat, "run", "--address", cluster.address, "--out", out]
    command += [part for text in args.set for part in ("--set", text)]
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: nobody reads a pipe while nodes are killed
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        events = kill_after_first_checkpoint(cluster, worker, out, process) if kill else {}
        process.wait(timeout=900)
        log.seek(0)
        output = log.read()
    return {"returncode": process.returncode, "output": output[-6000:], **events}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socialfeat", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--kill", action="store_true")
    parser.add_argument("--reference")
    parser.add_argument("--reuse", default="")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    cluster = Cluster(initialize_head=True, head_node_args=HEAD)
    worker = cluster.add_node(**NODE)
    runs = {}
    if args.reference:
        runs["reference"] = run(cluster, worker, args, out=args.reference, kill=False)
        copy_stages(args.reference, args.out, args.reuse.split(","))
    runs["run"] = run(cluster, worker, args, out=args.out, kill=args.kill)
    cluster.shutdown()
    print(json.dumps(runs))


if __name__ == "__main__":
    sys.exit(main())
