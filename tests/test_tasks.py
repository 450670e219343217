import numpy as np
import pytest

from adept_env.tasks import TASKS, UnknownNameError, get_task, normalized_score, parse_dataset_name


@pytest.mark.parametrize("name", list(TASKS))
def test_normalized_score_reference_points(name: str) -> None:
    task = TASKS[name]
    assert normalized_score(name, task.ref_min_score) == pytest.approx(0.0)
    assert normalized_score(name, task.ref_max_score) == pytest.approx(100.0)
    mid = (task.ref_min_score + task.ref_max_score) / 2
    np.testing.assert_allclose(normalized_score(task, np.array([mid, task.ref_max_score])), [50.0, 100.0])


def test_unknown_task_suggests_close_match() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'hopper'") as err:
        get_task("hoper")
    assert "halfcheetah" in str(err.value) and "walker2d" in str(err.value)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="halfcheetah-medium-replay"):
        parse_dataset_name("halfcheetah-mediumreplay")
    task, quality = parse_dataset_name("ADEPT-walker2d-medium-expert")
    assert task.name == "walker2d" and quality == "medium-expert"


def test_hopper_termination_matches_health_bounds() -> None:
    hopper = TASKS["hopper"]
    healthy = np.zeros(11)
    healthy[0] = 1.25
    low = healthy.copy()
    low[0] = 0.69
    tilted = healthy.copy()
    tilted[1] = 0.21
    nan = healthy.copy()
    nan[3] = np.nan
    result = hopper.is_terminated(np.stack([healthy, low, tilted, nan]))
    assert result.tolist() == [False, True, True, True]
    assert not TASKS["halfcheetah"].is_terminated(np.zeros((3, 17))).any()
