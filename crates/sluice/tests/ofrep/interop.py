"""Evaluates flags through the OpenFeature Python SDK and its OFREP provider.

Run by `tests/ofrep_sdk.rs` against a real sluice: the base URL of the admin
API is the only argument; the cases come as one JSON array on stdin, each
`{"id", "flag", "type", "default", "context"}` with `type` one of boolean,
string, number, integer, object and `context` an OFREP context (its
`targetingKey` becomes the SDK's targeting key). One JSON line per case goes
to stdout, in order: `{"id", "value", "reason", "variant", "error_code",
"error_message"}`, as the SDK's `get_*_details` reported them. Every
interpretation of the answer (types, defaults, error codes) is the SDK's.
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def evaluate(client, case):
    context = dict(case.get("context") or {})
    targeting_key = context.pop("targetingKey", None)
    evaluation_context = EvaluationContext(
        targeting_key=targeting_key, attributes=context
    )
    by_type = {
        "boolean": client.get_boolean_details,
        "string": client.get_string_details,
        "number": client.get_float_details,
        "integer": client.get_integer_details,
        "object": client.get_object_details,
    }
    details = by_type[case["type"]](case["flag"], case["default"], evaluation_context)
    return {
        "id": case["id"],
        "value": details.value,
        "reason": None if details.reason is None else str(details.reason),
        "variant": details.variant,
        "error_code": None if details.error_code is None else str(details.error_code),
        "error_message": details.error_message,
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: interop.py BASE_URL < cases.json")
    cases = json.load(sys.stdin)
    api.set_provider_and_wait(OFREPProvider(base_url=sys.argv[1], timeout=10.0))
    client = api.get_client("sluice-interop")
    try:
        for case in cases:
            print(json.dumps(evaluate(client, case)), flush=True)
    finally:
        api.shutdown()


if __name__ == "__main__":
    main()
