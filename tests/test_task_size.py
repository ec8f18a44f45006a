"""Fargate's size table at its edges, the size shorthand, and which launches are checked."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_fargate.errors import TaskConfigError
from airflow_fargate.run_task import RunTaskKwargsBuilder
from airflow_fargate.settings import load_settings
from airflow_fargate.task_size import FARGATE_SIZES, expand_shorthand, fargate_size_problem, is_fargate
from tests.helpers import minimal_config

CMD = ["airflow", "version"]


def size(cpu=None, memory=None, storage=None):
    overrides = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    if storage is not None:
        overrides["ephemeralStorage"] = {"sizeInGiB": storage}
    return {"overrides": overrides}


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [("256", "512"), ("256", "2048"), ("512", "1024"), ("512", "4096"), ("1024", "2048"), ("1024", "8192"),
     ("2048", "4096"), ("2048", "16384"), ("4096", "8192"), ("4096", "30720"), ("8192", "16384"),
     ("8192", "61440"), ("16384", "32768"), ("16384", "122880"), ("1 vCPU", "2 GB"), (".25 vcpu", "0.5 GB"),
     ("4 vCPU", "30GB"), (None, "512"), ("16384", None), (None, None)],
)  # fmt: skip
def test_fargate_accepts_the_table_edges(cpu, memory):
    assert fargate_size_problem(size(cpu, memory)) is None


@pytest.mark.parametrize(
    ("cpu", "memory", "message"),
    [
        ("256", "3072", r"with cpu 256 Fargate accepts memory 512, 1024, 2048 \(MiB\)"),
        ("512", "512", r"with cpu 512 Fargate accepts memory 1024, 2048, 3072, 4096 \(MiB\)"),
        ("512", "5120", r"with cpu 512 Fargate accepts"),
        ("1024", "1024", r"with cpu 1024 Fargate accepts memory 2048, 3072, 4096, 5120, 6144, 7168, 8192 \(MiB\)"),
        ("2048", "17408", r"with cpu 2048 Fargate accepts memory 4096, 5120, .*, 16384 \(MiB\)"),
        ("4096", "31744", r"with cpu 4096 Fargate accepts memory 8192, .*, 30720 \(MiB\)"),
        ("8192", "18432", r"with cpu 8192 Fargate accepts memory 16384, 20480, 24576, .*, 61440 \(MiB\)"),
        ("16384", "131072", r"with cpu 16384 Fargate accepts memory 32768, 40960, .*, 122880 \(MiB\)"),
        (
            "128",
            "512",
            r"overrides.cpu='128' is not a Fargate task size: Fargate accepts cpu 256, 512, 1024, 2048, 4096, 8192, 16384",
        ),
        ("32768", None, r"Fargate accepts cpu 256"),
        ("lots", "512", r"overrides.cpu='lots' is not a Fargate task size"),
        ("2 GB", "4096", r"overrides.cpu='2 GB' is not a Fargate task size"),
        (None, "700", r"overrides.memory='700' is not a Fargate task size"),
        (None, "1 vCPU", r"overrides.memory='1 vCPU' is not a number of MiB"),
        ("1 vCPU", "123456789012345678901234567890", r"overrides.memory='1234.*' is not a number of MiB"),
    ],
)
def test_fargate_refuses_other_sizes_listing_the_valid_ones(cpu, memory, message):
    problem = fargate_size_problem(size(cpu, memory))
    assert problem is not None and re.search(message, problem), problem
    assert len(problem) < 400


@pytest.mark.parametrize(("storage", "ok"), [(20, False), (21, True), (200, True), (201, False)])
def test_ephemeral_storage_edges(storage, ok):
    problem = fargate_size_problem(size(storage=storage))
    assert (problem is None) == ok
    if not ok:
        assert "21-200 GiB" in problem


@given(st.sampled_from(sorted(FARGATE_SIZES)), st.integers(min_value=256, max_value=140_000))
def test_a_pair_is_accepted_exactly_when_the_table_lists_it(cpu, memory):
    assert (fargate_size_problem(size(str(cpu), str(memory))) is None) == (memory in FARGATE_SIZES[cpu])


@pytest.mark.parametrize(
    ("kwargs", "default_strategy", "fargate"),
    [
        ({"launchType": "FARGATE"}, (), True),
        ({"launchType": "EC2"}, (), False),
        ({"launchType": "EXTERNAL"}, (), False),
        ({"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT"}]}, (), True),
        (
            {"capacityProviderStrategy": [{"capacityProvider": "FARGATE"}, {"capacityProvider": "FARGATE_SPOT"}]},
            (),
            True,
        ),
        (
            {"capacityProviderStrategy": [{"capacityProvider": "FARGATE"}, {"capacityProvider": "my-asg"}]},
            (),
            False,
        ),
        ({}, ({"capacityProvider": "FARGATE_SPOT"},), True),
        ({}, ({"capacityProvider": "gpu-asg"},), False),
        ({}, (), False),
    ],
)
def test_which_launches_are_fargate(kwargs, default_strategy, fargate):
    assert is_fargate(kwargs, default_strategy) is fargate


def test_ec2_launches_are_not_checked_against_the_table(monkeypatch):
    minimal_config(monkeypatch, launch_type="EC2")
    kwargs = RunTaskKwargsBuilder(load_settings()).build(CMD, {"cpu": 3000, "memory": 700})
    assert (kwargs["overrides"]["cpu"], kwargs["overrides"]["memory"]) == ("3000", "700")


def test_a_cluster_default_strategy_of_fargate_spot_is_checked(monkeypatch):
    minimal_config(monkeypatch)
    settings = load_settings()
    spot = RunTaskKwargsBuilder(settings, cluster_default_strategy=[{"capacityProvider": "FARGATE_SPOT"}])
    with pytest.raises(TaskConfigError, match="with cpu 256"):
        spot.build(CMD, {"cpu": 256, "memory": 4096})
    ec2 = RunTaskKwargsBuilder(settings, cluster_default_strategy=[{"capacityProvider": "gpu-asg"}])
    assert "launchType" not in ec2.build(CMD, {"cpu": 256, "memory": 4096})


def test_shorthand_sets_task_and_container_size_beside_full_keys():
    layer = expand_shorthand(
        {"cpu": "2 vCPU", "memory": 8192, "ephemeral_storage": 50, "overrides": {"containerOverrides": [
            {"name": "sidecar", "memory": 128}, {"name": "base", "environment": []}]}, "tags": []},
        "base", "executor_config", TaskConfigError,
    )  # fmt: skip
    assert layer == {
        "tags": [],
        "overrides": {
            "cpu": "2048",
            "memory": "8192",
            "ephemeralStorage": {"sizeInGiB": 50},
            "containerOverrides": [
                {"name": "sidecar", "memory": 128},
                {"name": "base", "environment": [], "cpu": 2048, "memory": 8192},
            ],
        },
    }


def test_shorthand_keeps_an_explicit_container_size_and_agrees_with_the_full_form():
    layer = expand_shorthand(
        {"memory": "4 GB", "overrides": {"memory": "4096", "containerOverrides": [{"name": "base", "memory": 3500}]}},
        "base", "executor_config", TaskConfigError,
    )  # fmt: skip
    assert layer["overrides"] == {"memory": "4096", "containerOverrides": [{"name": "base", "memory": 3500}]}


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"cpu": 1024, "overrides": {"cpu": "2048"}}, r"executor_config sets both cpu=1024 and overrides.cpu='2048'"),
        ({"cpu": "lots"}, r'cpu must be a positive number \(1024 or "1 vCPU"\)'),
        ({"memory": -1}, r'memory must be a positive number \(4096 or "4 GB"\)'),
        ({"memory": True}, r"memory must be a positive number"),
        ({"memory": "x" * 10_000}, r"got 'xxxxx.*\.\.\..*'\.$"),
        ({"ephemeral_storage": "50"}, r"ephemeral_storage must be a whole number of GiB"),
        ({"cpu": 256, "overrides": []}, r"overrides must be an object"),
    ],
)
def test_bad_shorthand_is_named(layer, message):
    with pytest.raises(TaskConfigError, match=message) as err:
        expand_shorthand(layer, "base", "executor_config", TaskConfigError)
    assert len(str(err.value)) < 300


def test_shorthand_reaches_run_task_and_a_wrong_size_fails_only_that_task(monkeypatch):
    minimal_config(monkeypatch)
    builder = RunTaskKwargsBuilder(load_settings())
    kwargs = builder.build(CMD, {"cpu": 1024, "memory": 4096})
    assert (kwargs["overrides"]["cpu"], kwargs["overrides"]["memory"]) == ("1024", "4096")
    with pytest.raises(TaskConfigError, match=r"^executor_config gives invalid ECS run_task kwargs: .*with cpu 1024 Fargate accepts memory 2048, 3072"):  # fmt: skip
        builder.check_executor_config({"cpu": 1024, "memory": 1024})
