"""The device a job computes on: the config's top-level ``device`` (``cuda`` at paper scale,
``cpu`` at local and smoke scale), passed to every stage command that loads a model. It is never
guessed from the hardware: a cluster job whose GPU is missing (a wrong partition, no GPU
request, a CPU build of torch) would otherwise train on the CPU until its time limit.

``require_device`` runs first in each such command, before any model or data is loaded.
"""
from __future__ import annotations

import os

DEVICES = ("cuda", "cpu")


class DeviceError(RuntimeError):
    """The config asks for a device this job does not have."""


def require_device(device: str, job: str) -> str:
    """``device`` when this process can compute on it; else a DeviceError naming ``job`` (the
    stage and what it computes), ``CUDA_VISIBLE_DEVICES`` and the torch build."""
    if device not in DEVICES:
        raise DeviceError(f"{job}: unknown device {device!r}; the config's `device` is one of {DEVICES}")
    if device == "cpu":
        return device
    import torch

    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
        raise DeviceError(
            f"{job}: the config says `device: cuda`, but this job sees no GPU "
            f"(CUDA_VISIBLE_DEVICES={'unset' if visible is None else repr(visible)}; torch {torch.__version__}, "
            f"built for {build}). Stopped before loading anything: request a GPU for this job "
            "(config `resources`), use an environment with a CUDA build of torch (`make setup-gpu`), "
            "or set `device: cpu` to run on the CPU on purpose")
    return device


def add_device_flag(parser) -> None:
    """``--device`` of a stage command that loads a model (required: no default in code)."""
    parser.add_argument("--device", choices=DEVICES, required=True,
                        help="the config's `device`; cuda stops at once when no GPU is visible")


def stage_device(device: str, job: str) -> str:
    """``require_device`` for a stage command: its error becomes the command's exit message."""
    try:
        return require_device(device, job)
    except DeviceError as error:
        raise SystemExit(f"error: {error}") from None


__all__ = ["DEVICES", "DeviceError", "require_device", "add_device_flag", "stage_device"]
