"""Whole dataset transitions and the model's next-state draws over the wire, on both transports.

GetDatasetPairs with ``include_transitions`` adds rewards, next observations, terminals and timeouts;
Step with ``draws`` adds the model's next-state draws (what a remote value penalty needs). Both are
new optional fields: a client built from the older contract (the fields stripped from the
descriptor) still gets its answers, without them.
"""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
from adept_client import InvalidArgumentError
from adept_client.proto.adept.v1 import world_model_pb2 as pb
from adept_client.tensors import from_tensor, to_tensor
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .conftest import ENV_ID, TOKENS

OBS_DIM, ACT_DIM = 17, 6
NEW_FIELDS = {"StepRequest": {"draws"}, "StepResponse": {"next_state_draws", "draws_terminated"},
              "GetDatasetPairsRequest": {"include_transitions"},
              "GetDatasetPairsResponse": {"rewards", "next_observations", "terminals", "timeouts"}}
"""The fields this contract added; the 'older client' below is the contract without them."""


@pytest.fixture(scope="module")
def dataset(live_server):
    """The dataset the server serves (5k rows)."""
    return live_server.core.engines.base(ENV_ID).dataset


def test_a_page_and_a_sample_carry_the_whole_transitions(client, dataset) -> None:
    session = client.create_session(ENV_ID, seed=0)
    page = session.dataset_transitions(start=10, count=5)
    rows = np.arange(10, 15)
    np.testing.assert_array_equal(page.indices, rows)
    np.testing.assert_array_equal(page.observations, dataset.observations[rows])
    np.testing.assert_array_equal(page.actions, dataset.actions[rows])
    np.testing.assert_array_equal(page.rewards, dataset.rewards[rows])
    np.testing.assert_array_equal(page.next_observations, dataset.next_observations[rows])
    np.testing.assert_array_equal(page.terminals, dataset.terminals[rows])
    np.testing.assert_array_equal(page.timeouts, dataset.timeouts[rows])
    assert page.rewards.dtype == np.float32 and page.terminals.dtype == bool and page.timeouts.dtype == bool
    assert page.total_rows == len(dataset) and page.dataset_fingerprint == session.info.dataset_fingerprint
    last = session.dataset_transitions(start=len(dataset) - 3, count=100)  # a page may end at the last row
    np.testing.assert_array_equal(last.indices, np.arange(len(dataset) - 3, len(dataset)))
    sample = session.dataset_transitions(sample_size=50, seed=4)
    pairs_indices, _, _ = session.dataset_pairs(sample_size=50, seed=4)
    np.testing.assert_array_equal(sample.indices, pairs_indices)  # sampled as GetDatasetPairs samples
    np.testing.assert_array_equal(sample.next_observations, dataset.next_observations[sample.indices])
    assert dataset.timeouts.any()  # the 5k-row file has time-limit cuts: the flags are carried, not all False
    session.close()


def test_fetch_transitions_pages_through_the_whole_dataset(client, dataset) -> None:
    session = client.create_session(ENV_ID, seed=0)
    seen: list[tuple[int, int]] = []
    everything = session.fetch_transitions(page_rows=1_500, on_page=lambda done, total: seen.append((done, total)))
    assert seen == [(1_500, 5_000), (3_000, 5_000), (4_500, 5_000), (5_000, 5_000)]
    np.testing.assert_array_equal(everything.indices, np.arange(len(dataset)))
    np.testing.assert_array_equal(everything.rewards, dataset.rewards)
    np.testing.assert_array_equal(everything.next_observations, dataset.next_observations)
    np.testing.assert_array_equal(everything.terminals, dataset.terminals)
    first = session.fetch_transitions(page_rows=700, max_rows=1_000)
    np.testing.assert_array_equal(first.indices, np.arange(1_000))
    with pytest.raises(ValueError, match="page_rows"):
        session.fetch_transitions(page_rows=0)
    session.close()


def test_step_returns_the_models_draws_when_asked(client) -> None:
    n, k = 3, 4
    session = client.create_session(ENV_ID, num_envs=n, seed=2, overrides={"n_samples": k, "horizon": 2})
    session.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (n, ACT_DIM)).astype(np.float32)
    plain = session.step(actions)
    assert plain.next_state_draws is None and plain.draws_terminated is None  # off by default
    out = session.step(actions, autoreset="same_step", draws=k)
    assert out.next_state_draws.shape == (n, k, OBS_DIM) and out.next_state_draws.dtype == np.float32
    assert out.draws_terminated.shape == (n, k) and out.draws_terminated.dtype == bool
    assert np.all(np.isfinite(out.next_state_draws))
    assert not out.draws_terminated.any()  # halfcheetah never terminates
    # the draws are those of the next state before the same-step reset: their mean is that observation
    np.testing.assert_allclose(out.next_state_draws.mean(axis=1), out.final_observations, atol=1e-4)
    assert out.reset_mask.all()  # horizon 2: every episode ended and was reset in this step
    spread = out.next_state_draws.std(axis=1).mean()
    assert spread > 0  # K different draws, not one repeated
    fewer = session.step(actions, draws=2)
    assert fewer.next_state_draws.shape == (n, 2, OBS_DIM)
    session.close()


def test_draws_on_a_next_step_reset_are_zeros_and_not_terminated(client) -> None:
    session = client.create_session(ENV_ID, num_envs=2, seed=0, overrides={"n_samples": 2, "horizon": 1})
    session.reset()
    actions = np.zeros((2, ACT_DIM), np.float32)
    session.step(actions, autoreset="next_step")  # both episodes end (horizon 1)
    out = session.step(actions, autoreset="next_step", draws=2)  # both are reset instead of stepped
    assert out.reset_mask.all()
    np.testing.assert_array_equal(out.next_state_draws, np.zeros((2, 2, OBS_DIM), np.float32))
    assert not out.draws_terminated.any()
    session.close()


def test_bad_draws_and_pages_are_invalid_arguments_with_the_valid_range(client, live_server, dataset) -> None:
    session = client.create_session(ENV_ID, num_envs=2, seed=0, overrides={"n_samples": 3})
    session.reset()
    actions = np.zeros((2, ACT_DIM), np.float32)
    ceiling = live_server.config.max_draws
    with pytest.raises(InvalidArgumentError, match=rf"draws must be an integer in \[0, {ceiling}\].*max_draws"):
        session.step(actions, draws=ceiling + 1)
    with pytest.raises(InvalidArgumentError, match=r"draws must be an integer in \[0, "):
        session.step(actions, draws=-1)
    with pytest.raises(InvalidArgumentError, match=r"draws must be in \[0, 3\].*n_samples >= 4"):
        session.step(actions, draws=4)
    rows = len(dataset)
    with pytest.raises(InvalidArgumentError, match=rf"start must be in \[0, {rows - 1}\].*past the last row"):
        session.dataset_transitions(start=rows, count=10)
    with pytest.raises(InvalidArgumentError, match="count must be >= 0"):
        client.call("GetDatasetPairs", pb.GetDatasetPairsRequest(session_id=session.session_id, count=-1,
                                                                 include_transitions=True))
    with pytest.raises(InvalidArgumentError, match=r"sample_size must be in \[1, "):
        session.dataset_transitions(sample_size=rows + 1)
    limit = live_server.core.dataset_rows_per_answer(OBS_DIM, ACT_DIM, include_transitions=True)
    assert limit < live_server.core.dataset_rows_per_answer(OBS_DIM, ACT_DIM)  # transitions: fewer rows an answer
    assert session.step(actions, draws=3).next_state_draws.shape == (2, 3, OBS_DIM)  # still serving
    session.close()


def test_draws_bigger_than_half_the_message_limit_are_refused(client, live_server,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    session = client.create_session(ENV_ID, num_envs=64, seed=0, overrides={"n_samples": 32})
    session.reset()
    actions = np.zeros((64, ACT_DIM), np.float32)
    # 64 envs x 32 draws x 17 floats x 4 bytes = 139 kB, over half of a 200 kB limit
    monkeypatch.setattr(live_server.core.config, "max_message_bytes", 200_000)
    with pytest.raises(InvalidArgumentError, match=r"message limit; ask for at most 22"):
        session.step(actions, draws=32)
    monkeypatch.undo()
    assert session.step(actions, draws=32).next_state_draws.shape == (64, 32, OBS_DIM)
    session.close()


def _http_json(live_server) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{live_server.http_port}",
                        headers={"authorization": f"Bearer {TOKENS[0]}"}, timeout=60)


def test_the_json_routes_carry_draws_and_transitions(live_server, dataset) -> None:
    with _http_json(live_server) as http:
        created = http.post("/v1/sessions", json={"env_id": ENV_ID, "num_envs": 2, "seed": 0,
                                                  "overrides": {"n_samples": 2}})
        assert created.status_code == 200, created.text
        sid = created.json()["session_id"]
        assert http.post(f"/v1/sessions/{sid}/reset", json={}).status_code == 200
        plain = http.post(f"/v1/sessions/{sid}/step", json={"actions": [[0.0] * ACT_DIM] * 2}).json()
        assert plain.get("next_state_draws") is None
        step = http.post(f"/v1/sessions/{sid}/step", json={"actions": [[0.0] * ACT_DIM] * 2, "draws": 2}).json()
        assert np.asarray(step["next_state_draws"]).shape == (2, 2, OBS_DIM)
        assert np.asarray(step["draws_terminated"]).shape == (2, 2)
        bad = http.post(f"/v1/sessions/{sid}/step", json={"actions": [[0.0] * ACT_DIM] * 2, "draws": -3})
        assert bad.status_code == 400 and bad.json()["code"] == "INVALID_ARGUMENT"
        assert f"[0, {live_server.config.max_draws}]" in bad.json()["message"]
        page = http.get(f"/v1/sessions/{sid}/dataset-pairs", params={"start": 5, "count": 3,
                                                                     "include_transitions": "true"}).json()
        np.testing.assert_allclose(page["rewards"], dataset.rewards[5:8], rtol=1e-6)
        np.testing.assert_allclose(page["next_observations"], dataset.next_observations[5:8], rtol=1e-6)
        assert page["terminals"] == dataset.terminals[5:8].tolist()
        assert page["timeouts"] == dataset.timeouts[5:8].tolist()
        pairs = http.get(f"/v1/sessions/{sid}/dataset-pairs", params={"start": 5, "count": 3}).json()
        assert "rewards" not in pairs  # without the flag: the pairs as before
        beyond = http.get(f"/v1/sessions/{sid}/dataset-pairs", params={"start": len(dataset), "count": 3,
                                                                       "include_transitions": "true"})
        assert beyond.status_code == 400 and f"[0, {len(dataset) - 1}]" in beyond.json()["message"]
        negative = http.get(f"/v1/sessions/{sid}/dataset-pairs", params={"count": -1})
        assert negative.status_code == 400 and "count" in negative.json()["message"]
        http.delete(f"/v1/sessions/{sid}")


# -- a client of the older contract -------------------------------------------------------------------
@pytest.fixture(scope="module")
def old_contract() -> dict[str, type]:
    """The request/response classes of the contract before the new fields (stripped from the descriptor)."""
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    proto.name = "adept/v1/world_model_before_transitions.proto"
    proto.package = "adept.v1old"
    for message in proto.message_type:
        stripped = NEW_FIELDS.get(message.name, set())
        kept = [f for f in message.field if f.name not in stripped]
        assert len(message.field) - len(kept) == len(stripped), message.name
        del message.field[:]
        message.field.extend(kept)
        for field in message.field:  # references to the package's own types
            if field.type_name.startswith(".adept.v1."):
                field.type_name = field.type_name.replace(".adept.v1.", ".adept.v1old.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(".adept.v1.", ".adept.v1old.")
            method.output_type = method.output_type.replace(".adept.v1.", ".adept.v1old.")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(proto.SerializeToString())
    file = pool.FindFileByName(proto.name)
    return {name: message_factory.GetMessageClass(file.message_types_by_name[name])
            for name in ("Tensor", "CreateSessionRequest", "CreateSessionResponse", "ResetRequest", "StepRequest",
                         "StepResponse", "GetDatasetPairsRequest", "GetDatasetPairsResponse")}


def call_raw(target: str, method: str, body: bytes) -> bytes:
    """Send request bytes to ``method`` over ``target``'s transport; return the answer's bytes."""
    if target.startswith("http"):
        answer = httpx.post(f"{target}/rpc/adept.v1.WorldModelService/{method}", content=body, timeout=60,
                            headers={"authorization": f"Bearer {TOKENS[0]}", "content-type": "application/x-protobuf"})
        assert answer.status_code == 200, answer.text
        return answer.content
    with grpc.insecure_channel(target) as channel:
        return channel.unary_unary(f"/adept.v1.WorldModelService/{method}")(
            body, metadata=(("authorization", f"Bearer {TOKENS[0]}"),), timeout=60)


def test_a_client_of_the_older_contract_still_works(target: str, old_contract: dict[str, type]) -> None:
    old = old_contract
    assert "draws" not in old["StepRequest"].DESCRIPTOR.fields_by_name  # really the older contract
    created = old["CreateSessionResponse"].FromString(call_raw(
        target, "CreateSession", old["CreateSessionRequest"](env_id=ENV_ID, num_envs=2, seed=0).SerializeToString()))
    sid = created.session_id
    call_raw(target, "Reset", old["ResetRequest"](session_id=sid).SerializeToString())
    actions = old["Tensor"].FromString(to_tensor(np.zeros((2, ACT_DIM), np.float32)).SerializeToString())
    step_bytes = call_raw(target, "Step", old["StepRequest"](session_id=sid, actions=actions).SerializeToString())
    step = old["StepResponse"].FromString(step_bytes)
    assert tuple(step.observations.shape) == (2, OBS_DIM)
    assert not pb.StepResponse.FromString(step_bytes).HasField("next_state_draws")  # nothing new was sent
    pairs_bytes = call_raw(target, "GetDatasetPairs", old["GetDatasetPairsRequest"](
        session_id=sid, start=0, count=4).SerializeToString())
    pairs = old["GetDatasetPairsResponse"].FromString(pairs_bytes)
    assert tuple(pairs.observations.shape) == (4, OBS_DIM) and pairs.total_rows == 5_000
    assert not pb.GetDatasetPairsResponse.FromString(pairs_bytes).HasField("rewards")
    # and the answers that do carry the new fields parse in the older contract (unknown fields are skipped)
    with_draws = pb.StepRequest(session_id=sid, actions=to_tensor(np.zeros((2, ACT_DIM), np.float32)))
    created_new = pb.CreateSessionRequest(env_id=ENV_ID, num_envs=2, seed=0, overrides={"n_samples": "2"})
    sid2 = pb.CreateSessionResponse.FromString(call_raw(target, "CreateSession",
                                                        created_new.SerializeToString())).session_id
    call_raw(target, "Reset", pb.ResetRequest(session_id=sid2).SerializeToString())
    with_draws.session_id, with_draws.draws = sid2, 2
    rich = call_raw(target, "Step", with_draws.SerializeToString())
    assert pb.StepResponse.FromString(rich).HasField("next_state_draws")
    older_view = old["StepResponse"].FromString(rich)
    np.testing.assert_array_equal(from_tensor(pb.Tensor.FromString(older_view.observations.SerializeToString())),
                                  from_tensor(pb.StepResponse.FromString(rich).observations))
