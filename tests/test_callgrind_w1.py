"""The workloads ``benchmarks.callgrind_w1`` measures run, and handle every event."""

from __future__ import annotations

import pytest
from benchmarks.callgrind_w1 import RPC_WORKLOADS, WORKLOADS


@pytest.mark.parametrize("fanout", [1, 10])
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
async def test_workload_handles_every_event(workload: str, fanout: int) -> None:
    await WORKLOADS[workload](200, fanout)  # asserts the count itself


@pytest.mark.parametrize("workload", sorted(RPC_WORKLOADS))
async def test_rpc_workload_answers_every_request(workload: str) -> None:
    await RPC_WORKLOADS[workload](200, 1)  # asserts every reply itself
