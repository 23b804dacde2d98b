"""The running API against its own OpenAPI contract, property-based (schemathesis), bounded in examples.

Every operation of ``/openapi.json`` is called with generated requests, valid ones and ones that break the
contract, on a real server over a real store; schemathesis checks each answer: no 5xx, the status, content
type, headers and body the contract declares, contract-breaking requests refused, admin calls refused
without the token. Seeded (``derandomize``), so a failure replays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import GenerationMode

from serve.api.grids import GridApi
from serve.api.settings import ApiSettings
from serve.api.web import HttpService
from tests.serve.test_api import seeded_store

EXAMPLES = 15  # per operation and mode: about 350 requests in all


STORED = ["G19_M1_20240615T200024Z_lightning-v1", "G19_M1_20240615T200524Z_lightning-v1",
          "G19_M1_20240615T201024Z_lightning-v1"]  # fmt: skip


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = seeded_store(Path(tmp_path_factory.mktemp("contract")) / "grids")
    assert [g.grid_id for g in store.grids("M1")] == STORED
    service = HttpService(GridApi(store, ApiSettings(admin_token="contract-token")), "127.0.0.1", 0).start()
    yield f"http://{service.address[0]}:{service.address[1]}"
    service.stop()


def cases(operation: Any, mode: GenerationMode) -> st.SearchStrategy[schemathesis.Case]:
    """The operation's generated requests; valid ones name a stored grid half the time (else all would be 404)."""
    generated = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.NEGATIVE or "{grid_id}" not in operation.path:
        return generated

    def name_a_stored_grid(pair: tuple[schemathesis.Case, str | None]) -> schemathesis.Case:
        case, grid_id = pair
        if grid_id is not None:
            case.path_parameters["grid_id"] = grid_id
        return case

    return st.tuples(generated, st.sampled_from([*STORED, None])).map(name_a_stored_grid)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_keeps_the_contract(base_url: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12  # every route is in the contract

    if mode is GenerationMode.NEGATIVE:  # a request can break the contract only where it has inputs
        operations = [op for op in operations if op.definition.raw.get("parameters") or op.definition.raw.get(
            "requestBody")]  # fmt: skip
        assert len(operations) >= 8
    for operation in operations:

        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])  # fmt: skip
        @hypothesis.given(case=cases(operation, mode))
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(base_url=base_url, timeout=30)
            statuses[response.status_code] += 1

        check()
    assert not [s for s in statuses if s >= 500], statuses
    if mode is GenerationMode.POSITIVE:  # valid requests were answered, grid routes included, not only refused
        assert statuses[200] > 4 * EXAMPLES, statuses
