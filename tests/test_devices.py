"""Device placement: names checked against what torch sees, every tensor follows ``.to``, no hidden CPU."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from adept_env.devices import resolve_device, visible_devices

NO_GPU = not torch.cuda.is_available()


def test_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'.*auto, cpu, cuda"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="not available: torch sees cpu"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
    assert visible_devices().startswith("torch sees cpu")


@pytest.mark.skipif(not NO_GPU, reason="checks the error where torch sees no GPU")
def test_asking_for_an_absent_gpu_is_an_error_everywhere(small_datasets: dict[str, Path],
                                                          quick_model_path: Path) -> None:
    import gymnasium as gym

    import adept_env  # noqa: F401  (registers the ids)
    from adept_env.agents.iql import IQL
    from adept_env.diffusion import WorldModel
    from adept_env.training import TrainConfig

    with pytest.raises(ValueError, match="torch sees"):
        WorldModel.load(quick_model_path, device="cuda")
    with pytest.raises(ValueError, match="torch sees"):
        IQL(17, 6, device="cuda")
    with pytest.raises(ValueError, match="torch sees"):
        TrainConfig(device="cuda:0")
    with pytest.raises(ValueError, match="torch sees"):
        gym.make("ADEPT-halfcheetah-random", model_path=str(quick_model_path),
                 dataset_path=str(small_datasets["halfcheetah"]), device="cuda")


def test_every_parameter_and_buffer_follows_to(quick_model_path: Path) -> None:
    from adept_env.agents.iql import IQL
    from adept_env.diffusion import WorldModel

    model = WorldModel.load(quick_model_path)
    tensors = [*model.nets.parameters(), *model.nets.buffers()]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    model.to(torch.device("meta"))  # a device every machine has: proves the plumbing without a GPU
    assert model.device.type == "meta"
    assert all(t.device.type == "meta" for t in [*model.nets.parameters(), *model.nets.buffers()])
    agent = IQL(11, 3, device=torch.device("meta"))
    for net in (agent.actor, agent.q1, agent.q2, agent.q1_target, agent.q2_target, agent.value):
        assert all(t.device.type == "meta" for t in [*net.parameters(), *net.buffers()])


def _string_constants(function: object) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_nothing_in_the_sampling_or_fitting_path_names_the_cpu() -> None:
    from adept_env.agents.iql import IQL, GaussianActor
    from adept_env.diffusion import flow
    from adept_env.diffusion.world_model import WorldModel

    functions = [WorldModel.sample, WorldModel.fit, WorldModel._tensors, WorldModel._val_loss,
                 WorldModel._example_losses, WorldModel._update_residual_scale, flow.flow_matching_loss,
                 flow.euler_sample, IQL.update, GaussianActor.act, GaussianActor.log_prob]
    for function in functions:
        assert "cpu" not in _string_constants(function), function.__qualname__


def test_cpu_results_do_not_change_with_to_and_weights_load_on_any_device(quick_model_path: Path,
                                                                         tmp_path: Path) -> None:
    from adept_env.diffusion import WorldModel

    model = WorldModel.load(quick_model_path)
    obs, act = np.zeros((8, 17), np.float32), np.full((8, 6), 0.2, np.float32)
    before = model.sample(obs, act, seed=3)
    after = model.to("cpu").sample(obs, act, seed=3)
    np.testing.assert_array_equal(before.next_observations, after.next_observations)
    saved = model.save(tmp_path / "m")
    again = WorldModel.load(saved, device="auto")  # the GPU when there is one, else the CPU
    np.testing.assert_allclose(again.sample(obs, act, seed=3).next_observations, before.next_observations,
                               rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA device")
def test_world_model_samples_and_fits_on_the_gpu(small_datasets: dict[str, Path], quick_model_path: Path) -> None:
    from adept_env.data.dataset import load_dataset
    from adept_env.diffusion import WorldModel

    model = WorldModel.load(quick_model_path, device="cuda")
    dataset = load_dataset(small_datasets["halfcheetah"])
    report = model.fit(dataset, steps=20, progress=False)
    assert report.steps == 20 and model.device.type == "cuda"
    pred = model.sample(dataset.observations[:64], dataset.actions[:64], seed=0)
    assert pred.next_observations.shape == (64, 17) and np.isfinite(pred.uncertainty).all()
