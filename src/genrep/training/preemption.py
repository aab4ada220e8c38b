"""Preemption: SIGTERM / SIGUSR1 turn into a checkpoint at the next step boundary and a distinct exit.

Cluster schedulers stop jobs with SIGTERM (SLURM at the time limit or on preemption, Kubernetes,
torchrun forwarding its own SIGTERM) and SLURM can warn ahead with SIGUSR1 (`sbatch
--signal=USR1@120`). Inside `preemptible()` those signals only set a flag; the long-running loops
(`Trainer.fit`, the continual runner, sharded sampling) poll `stop_requested()` at each step
(task, shard) boundary, write their checkpoint and raise `Preempted`, which the CLI prints with the
resume hint and turns into exit status `PREEMPTED_EXIT_CODE`. Under SLURM, when the job allows
requeueing (`scontrol show job` says Requeue=1, e.g. `sbatch --requeue`), global rank 0 also runs
`scontrol requeue $SLURM_JOB_ID`, so the job starts again and resumes (`--resume auto`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator

import torch

from genrep.errors import GenrepError

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL of sysexits.h: "temporary failure, the user is invited to retry"
SIGNALS = ("SIGTERM", "SIGUSR1")

_received: list[str] = []  # names of the signals caught inside `preemptible()`, in order


class Preempted(GenrepError):
    """A run stopped on SIGTERM/SIGUSR1 after writing its checkpoint; the message says how to resume.
    `stop` is the message without the hint, `hint` the hint; `with_hint(other)` the message with another
    (a command whose way to continue differs, e.g. `genrep reproduce`, which resumes by itself)."""

    def __init__(self, stop: str, hint: str, tail: str = ""):
        super().__init__(f"{stop}; {hint}{tail}")
        self.stop, self.hint, self.tail = stop, hint, tail

    def with_hint(self, hint: str) -> str:
        return f"{self.stop}; {hint}{self.tail}"


@contextlib.contextmanager
def preemptible() -> Iterator[None]:
    """Catch SIGTERM and SIGUSR1 (flag only) for the duration; the previous handlers come back after.
    Outside the main thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    _received.clear()
    for name in SIGNALS:
        number = getattr(signal, name)
        previous[number] = signal.signal(number, lambda signum, frame: _received.append(signal.Signals(signum).name))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _received.clear()


def received_signal() -> str | None:
    """The name of the first stop signal caught in this process ("SIGTERM", "SIGUSR1"), or None."""
    return _received[0] if _received else None


def stop_requested() -> bool:
    """Whether any process of the run caught a stop signal: under several processes (the default
    `torch.distributed` group, which Fabric and torchrun set up) every rank agrees through one
    all-reduce of a flag, so all of them stop at the same step. Call it at the same point on every rank."""
    import torch.distributed as dist

    local = received_signal() is not None
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    flag = torch.tensor([1.0 if local else 0.0], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(flag)
    return bool(flag.item() > 0)


def preempted(what: str, resume_hint: str, *, rank_zero: bool = True) -> Preempted:
    """The `Preempted` error for a run that stopped after `what` (e.g. "writing the checkpoint at step
    120"); under SLURM with requeue allowed, rank 0 first requeues the job and says so."""
    name = received_signal() or "a stop signal on another rank"
    requeued = requeue_slurm_job() if rank_zero else None
    return Preempted(f"stopped by {name} after {what}", resume_hint, f"; SLURM job {requeued} requeued" if requeued else "")


def requeue_slurm_job() -> str | None:
    """`scontrol requeue $SLURM_JOB_ID` when running under SLURM in a job that allows requeueing
    (Requeue=1 in `scontrol show job`); returns the job id when requeued, None otherwise (no SLURM,
    no scontrol, requeue not allowed, or the command failed)."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID") and \
        f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}" or os.environ.get("SLURM_JOB_ID")
    scontrol = shutil.which("scontrol")
    if not job or scontrol is None:
        return None
    try:
        shown = subprocess.run([scontrol, "show", "job", job], capture_output=True, text=True, timeout=30)
        if "Requeue=1" not in shown.stdout:
            return None
        done = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return job if done.returncode == 0 else None
