"""The HTTP front-end's JSON endpoints, OpenAPI docs, health and body limits."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ENV_ID, TOKENS

AUTH = {"authorization": f"Bearer {TOKENS[0]}"}


@pytest.fixture
def http(live_server) -> httpx.Client:
    with httpx.Client(base_url=f"http://127.0.0.1:{live_server.http_port}", headers=AUTH, timeout=60) as client:
        yield client


def test_health_and_docs(http: httpx.Client) -> None:
    health = httpx.get(f"{http.base_url}/health")  # no token needed
    assert health.status_code == 200 and health.json()["status"] == "SERVING"
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/sessions", "/v1/sessions/{session_id}/step", "/v1/sessions/{session_id}/reset",
            "/v1/environments"} <= set(paths)


def test_json_session_round_trip(http: httpx.Client) -> None:
    assert http.get("/v1/environments").json()["environments"][0]["env_id"] == ENV_ID
    created = http.post("/v1/sessions", json={"env_id": ENV_ID, "num_envs": 2, "seed": 0})
    assert created.status_code == 200, created.text
    info = created.json()
    assert info["action_spec"]["low"] == [-1.0] * 6 and info["observation_spec"]["low"] == [None] * 17
    sid = info["session_id"]
    reset = http.post(f"/v1/sessions/{sid}/reset", json={"seed": 1}).json()
    assert len(reset["observations"]) == 2 and len(reset["observations"][0]) == 17
    step = http.post(f"/v1/sessions/{sid}/step", json={"actions": [[0.1] * 6, [-0.1] * 6]})
    assert step.status_code == 200, step.text
    assert len(step.json()["rewards"]) == 2 and step.json()["final_observations"] is None
    pairs = http.get(f"/v1/sessions/{sid}/dataset-pairs", params={"start": 0, "count": 3}).json()
    assert pairs["indices"] == [0, 1, 2]
    update = http.post(f"/v1/sessions/{sid}/policy", json={"log_probs": {"indices": [0, 1, 2],
                                                                         "log_probs": [-1.0, -2.0, -3.0]}})
    assert update.status_code == 200, update.text
    assert http.delete(f"/v1/sessions/{sid}").status_code == 200
    gone = http.post(f"/v1/sessions/{sid}/reset", json={})
    assert gone.status_code == 404 and gone.json()["code"] == "NOT_FOUND"


@pytest.mark.parametrize(("body", "needle"), [
    (b"{not json", "bad request"),
    (b'{"actions": [[0.1, 0.2], [0.3]]}', "rectangular"),
    (b'{"actions": "left"}', "actions"),
    (b'{"actions": [[NaN, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]}', "NaN"),
])
def test_malformed_json_is_a_400_with_a_message(http: httpx.Client, body: bytes, needle: str) -> None:
    sid = http.post("/v1/sessions", json={"env_id": ENV_ID, "num_envs": 2}).json()["session_id"]
    http.post(f"/v1/sessions/{sid}/reset", json={})
    answer = http.post(f"/v1/sessions/{sid}/step", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and needle in answer.json()["message"], answer.text
    assert http.post(f"/v1/sessions/{sid}/step", json={"actions": [[0.0] * 6] * 2}).status_code == 200
    http.delete(f"/v1/sessions/{sid}")


def test_oversized_body_is_a_413(http: httpx.Client, live_server) -> None:
    limit = live_server.config.max_message_bytes
    answer = http.post("/v1/sessions", content=b"x" * (limit + 1), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "limit" in answer.json()["message"]
    assert http.get("/v1/environments").status_code == 200


def test_missing_token_is_a_401(live_server) -> None:
    answer = httpx.get(f"http://127.0.0.1:{live_server.http_port}/v1/environments")
    assert answer.status_code == 401 and "Bearer" in answer.json()["message"]
