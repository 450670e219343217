from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
    DTYPE_BOOL: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]

class AutoresetMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTORESET_MODE_NONE: _ClassVar[AutoresetMode]
    AUTORESET_MODE_NEXT_STEP: _ClassVar[AutoresetMode]
    AUTORESET_MODE_SAME_STEP: _ClassVar[AutoresetMode]

class RefitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFIT_STATE_UNSPECIFIED: _ClassVar[RefitState]
    REFIT_STATE_RUNNING: _ClassVar[RefitState]
    REFIT_STATE_DONE: _ClassVar[RefitState]
    REFIT_STATE_FAILED: _ClassVar[RefitState]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_INT32: DType
DTYPE_INT64: DType
DTYPE_BOOL: DType
DTYPE_UINT8: DType
AUTORESET_MODE_NONE: AutoresetMode
AUTORESET_MODE_NEXT_STEP: AutoresetMode
AUTORESET_MODE_SAME_STEP: AutoresetMode
REFIT_STATE_UNSPECIFIED: RefitState
REFIT_STATE_RUNNING: RefitState
REFIT_STATE_DONE: RefitState
REFIT_STATE_FAILED: RefitState

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class BoxSpec(_message.Message):
    __slots__ = ("shape", "dtype", "low", "high")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    low: _containers.RepeatedScalarFieldContainer[float]
    high: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., low: _Optional[_Iterable[float]] = ..., high: _Optional[_Iterable[float]] = ...) -> None: ...

class EnvironmentInfo(_message.Message):
    __slots__ = ("env_id", "task", "dataset", "obs_dim", "act_dim", "loaded")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OBS_DIM_FIELD_NUMBER: _ClassVar[int]
    ACT_DIM_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    task: str
    dataset: str
    obs_dim: int
    act_dim: int
    loaded: bool
    def __init__(self, env_id: _Optional[str] = ..., task: _Optional[str] = ..., dataset: _Optional[str] = ..., obs_dim: _Optional[int] = ..., act_dim: _Optional[int] = ..., loaded: _Optional[bool] = ...) -> None: ...

class ListEnvironmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEnvironmentsResponse(_message.Message):
    __slots__ = ("environments", "client_overrides")
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    environments: _containers.RepeatedCompositeFieldContainer[EnvironmentInfo]
    client_overrides: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, environments: _Optional[_Iterable[_Union[EnvironmentInfo, _Mapping]]] = ..., client_overrides: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("env_id", "num_envs", "seed", "overrides")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_ENVS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    num_envs: int
    seed: int
    overrides: _containers.ScalarMap[str, str]
    def __init__(self, env_id: _Optional[str] = ..., num_envs: _Optional[int] = ..., seed: _Optional[int] = ..., overrides: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session_id", "env_id", "num_envs", "observation_spec", "action_spec", "model_version", "horizon", "dataset_rows", "dataset_fingerprint", "idle_timeout_seconds", "config")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_ENVS_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    ACTION_SPEC_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    DATASET_ROWS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    env_id: str
    num_envs: int
    observation_spec: BoxSpec
    action_spec: BoxSpec
    model_version: int
    horizon: int
    dataset_rows: int
    dataset_fingerprint: str
    idle_timeout_seconds: float
    config: _containers.ScalarMap[str, str]
    def __init__(self, session_id: _Optional[str] = ..., env_id: _Optional[str] = ..., num_envs: _Optional[int] = ..., observation_spec: _Optional[_Union[BoxSpec, _Mapping]] = ..., action_spec: _Optional[_Union[BoxSpec, _Mapping]] = ..., model_version: _Optional[int] = ..., horizon: _Optional[int] = ..., dataset_rows: _Optional[int] = ..., dataset_fingerprint: _Optional[str] = ..., idle_timeout_seconds: _Optional[float] = ..., config: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("session_id", "seed", "mask")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    seed: int
    mask: Tensor
    def __init__(self, session_id: _Optional[str] = ..., seed: _Optional[int] = ..., mask: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("observations", "model_version")
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    observations: Tensor
    model_version: int
    def __init__(self, observations: _Optional[_Union[Tensor, _Mapping]] = ..., model_version: _Optional[int] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("session_id", "actions", "autoreset_mode", "draws")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    AUTORESET_MODE_FIELD_NUMBER: _ClassVar[int]
    DRAWS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    actions: Tensor
    autoreset_mode: AutoresetMode
    draws: int
    def __init__(self, session_id: _Optional[str] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ..., autoreset_mode: _Optional[_Union[AutoresetMode, str]] = ..., draws: _Optional[int] = ...) -> None: ...

class StepResponse(_message.Message):
    __slots__ = ("observations", "rewards", "terminated", "truncated", "uncertainty", "raw_rewards", "halted", "model_version", "final_observations", "reset_mask", "next_state_draws", "draws_terminated")
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    RAW_REWARDS_FIELD_NUMBER: _ClassVar[int]
    HALTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FINAL_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    RESET_MASK_FIELD_NUMBER: _ClassVar[int]
    NEXT_STATE_DRAWS_FIELD_NUMBER: _ClassVar[int]
    DRAWS_TERMINATED_FIELD_NUMBER: _ClassVar[int]
    observations: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    uncertainty: Tensor
    raw_rewards: Tensor
    halted: Tensor
    model_version: int
    final_observations: Tensor
    reset_mask: Tensor
    next_state_draws: Tensor
    draws_terminated: Tensor
    def __init__(self, observations: _Optional[_Union[Tensor, _Mapping]] = ..., rewards: _Optional[_Union[Tensor, _Mapping]] = ..., terminated: _Optional[_Union[Tensor, _Mapping]] = ..., truncated: _Optional[_Union[Tensor, _Mapping]] = ..., uncertainty: _Optional[_Union[Tensor, _Mapping]] = ..., raw_rewards: _Optional[_Union[Tensor, _Mapping]] = ..., halted: _Optional[_Union[Tensor, _Mapping]] = ..., model_version: _Optional[int] = ..., final_observations: _Optional[_Union[Tensor, _Mapping]] = ..., reset_mask: _Optional[_Union[Tensor, _Mapping]] = ..., next_state_draws: _Optional[_Union[Tensor, _Mapping]] = ..., draws_terminated: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class GetDatasetPairsRequest(_message.Message):
    __slots__ = ("session_id", "start", "count", "sample_size", "seed", "include_transitions")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    start: int
    count: int
    sample_size: int
    seed: int
    include_transitions: bool
    def __init__(self, session_id: _Optional[str] = ..., start: _Optional[int] = ..., count: _Optional[int] = ..., sample_size: _Optional[int] = ..., seed: _Optional[int] = ..., include_transitions: _Optional[bool] = ...) -> None: ...

class GetDatasetPairsResponse(_message.Message):
    __slots__ = ("indices", "observations", "actions", "total_rows", "dataset_fingerprint", "rewards", "next_observations", "terminals", "timeouts")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    TERMINALS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    indices: Tensor
    observations: Tensor
    actions: Tensor
    total_rows: int
    dataset_fingerprint: str
    rewards: Tensor
    next_observations: Tensor
    terminals: Tensor
    timeouts: Tensor
    def __init__(self, indices: _Optional[_Union[Tensor, _Mapping]] = ..., observations: _Optional[_Union[Tensor, _Mapping]] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ..., total_rows: _Optional[int] = ..., dataset_fingerprint: _Optional[str] = ..., rewards: _Optional[_Union[Tensor, _Mapping]] = ..., next_observations: _Optional[_Union[Tensor, _Mapping]] = ..., terminals: _Optional[_Union[Tensor, _Mapping]] = ..., timeouts: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class PolicySnapshot(_message.Message):
    __slots__ = ("safetensors", "spec_json")
    SAFETENSORS_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    safetensors: bytes
    spec_json: str
    def __init__(self, safetensors: _Optional[bytes] = ..., spec_json: _Optional[str] = ...) -> None: ...

class LogProbs(_message.Message):
    __slots__ = ("indices", "log_probs", "dataset_fingerprint")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    LOG_PROBS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    indices: Tensor
    log_probs: Tensor
    dataset_fingerprint: str
    def __init__(self, indices: _Optional[_Union[Tensor, _Mapping]] = ..., log_probs: _Optional[_Union[Tensor, _Mapping]] = ..., dataset_fingerprint: _Optional[str] = ...) -> None: ...

class UpdatePolicyRequest(_message.Message):
    __slots__ = ("session_id", "snapshot", "log_probs")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    LOG_PROBS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    snapshot: PolicySnapshot
    log_probs: LogProbs
    def __init__(self, session_id: _Optional[str] = ..., snapshot: _Optional[_Union[PolicySnapshot, _Mapping]] = ..., log_probs: _Optional[_Union[LogProbs, _Mapping]] = ...) -> None: ...

class UpdatePolicyResponse(_message.Message):
    __slots__ = ("policy_updates", "model_version", "started_refit")
    POLICY_UPDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_REFIT_FIELD_NUMBER: _ClassVar[int]
    policy_updates: int
    model_version: int
    started_refit: RefitStatus
    def __init__(self, policy_updates: _Optional[int] = ..., model_version: _Optional[int] = ..., started_refit: _Optional[_Union[RefitStatus, _Mapping]] = ...) -> None: ...

class RefitRequest(_message.Message):
    __slots__ = ("session_id", "steps", "unweighted")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    UNWEIGHTED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    steps: int
    unweighted: bool
    def __init__(self, session_id: _Optional[str] = ..., steps: _Optional[int] = ..., unweighted: _Optional[bool] = ...) -> None: ...

class RefitStatus(_message.Message):
    __slots__ = ("job_id", "state", "policy_updates", "effective_sample_size", "ess_fraction", "clipped_fraction", "model_version", "seconds", "error", "checkpointed", "kept_start")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_UPDATES_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ESS_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CLIPPED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTED_FIELD_NUMBER: _ClassVar[int]
    KEPT_START_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    state: RefitState
    policy_updates: int
    effective_sample_size: float
    ess_fraction: float
    clipped_fraction: float
    model_version: int
    seconds: float
    error: str
    checkpointed: bool
    kept_start: bool
    def __init__(self, job_id: _Optional[int] = ..., state: _Optional[_Union[RefitState, str]] = ..., policy_updates: _Optional[int] = ..., effective_sample_size: _Optional[float] = ..., ess_fraction: _Optional[float] = ..., clipped_fraction: _Optional[float] = ..., model_version: _Optional[int] = ..., seconds: _Optional[float] = ..., error: _Optional[str] = ..., checkpointed: _Optional[bool] = ..., kept_start: _Optional[bool] = ...) -> None: ...

class GetRefitRequest(_message.Message):
    __slots__ = ("session_id", "job_id", "wait_seconds")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    job_id: int
    wait_seconds: float
    def __init__(self, session_id: _Optional[str] = ..., job_id: _Optional[int] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
