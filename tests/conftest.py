"""Which device the device-agnostic tests run on: ``--device cuda`` or ``NAS_TEST_DEVICE=cuda`` (default cpu).

On a CPU, Triton kernels run in Triton's interpreter: ``TRITON_INTERPRET=1`` is set here, before anything imports
Triton (Triton reads it at import).
"""

import os

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--device", default=None,
                     help="device for the device tests: cpu, cuda or cuda:N (default: $NAS_TEST_DEVICE, else cpu)")


def _device_name(config) -> str:
    return config.getoption("--device") or os.environ.get("NAS_TEST_DEVICE") or "cpu"


def pytest_configure(config):
    name = _device_name(config)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise pytest.UsageError(f"--device / NAS_TEST_DEVICE: {name!r} is not a device; use cpu, cuda or cuda:N"
        ) from None
    if device.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"--device / NAS_TEST_DEVICE: {name!r} is not supported; use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device / NAS_TEST_DEVICE: {name!r} but this torch sees no CUDA device; use cpu")
    if device.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    """The device the device-agnostic tests run on."""
    return torch.device(_device_name(pytestconfig))
