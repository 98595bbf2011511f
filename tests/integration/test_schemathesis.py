"""schemathesis against the live app, with the real local Slurm behind it: up to 500
generated requests per operation (positive and negative), every check schemathesis
has: no 5xx, every status and body as documented, invalid input refused, valid input
accepted, auth enforced, 405 with Allow."""
from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.auth import ROLES
from tests.conftest import make_keys
from tests.integration.conftest import live, slurm_config

pytestmark = pytest.mark.slurm

KEYS, PLAIN = make_keys(fuzz=(["someone"], ROLES))
HEADERS = {"Authorization": f"Bearer {PLAIN['fuzz']}"}
# (No rate limits: schemathesis sends thousands of requests, many without a valid key.)
APP, _ = live({**slurm_config(), "SLURM_PROXY_RATE_LIMIT": "",
               "SLURM_PROXY_UNAUTHENTICATED_RATE_LIMIT": "",
               "SLURM_PROXY_ALLOWED_PATH_PREFIXES": "/home/{username}/fuzz,/tmp/slurm-proxy-fuzz"},
              keys=KEYS)
SEEN: Counter = Counter()
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP, headers=HEADERS)
# Event streams answer for as long as the client listens, so a generated request to one
# would never end: they are tested on their own (tests/unit/test_watch.py).
fuzzed = schema.exclude(path_regex=r"/events$")


@fuzzed.parametrize()
@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    SEEN[case.operation.label] += 1
    # Each authenticated operation declares a required Authorization header, so
    # schemathesis generates one (replaced here by the fuzz key's) or, in a negative
    # case, leaves it out on purpose: such a request goes out as generated, without
    # a key, and must be refused. Adding the key to it would turn the negative case
    # into a valid request that schemathesis then reports as wrongly accepted.
    if "Authorization" in (case.headers or {}):
        case.call_and_validate(headers=HEADERS)
    else:
        case.call_and_validate()


def test_every_operation_got_at_least_500_requests():
    if not SEEN:
        pytest.skip("run together with test_api_conforms_to_its_schema")
    print("generated requests per operation:", dict(sorted(SEEN.items())))
    streams = len(list(schema.get_all_operations())) - len(list(fuzzed.get_all_operations()))
    assert streams == 2
    assert len(SEEN) == len(list(fuzzed.get_all_operations())) >= 16
    for operation, count in SEEN.items():
        assert count >= 500, (operation, count)
