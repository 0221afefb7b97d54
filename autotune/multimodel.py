"""Several models served by one server: the traffic mix between them, and the ModelServerConfig that lists them.

TF Serving serves every model of a `--model_config_file` from one process; with
`--enable_per_model_batching_parameters` each model batches by its own
`batching_params.pbtxt` (in its version directory) and shares only the batch
threads of the global file. A study's `[mix]` gives each model its share of the
requests; the generator sends them interleaved in that proportion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from autotune.errors import AutotuneError
from autotune.traffic.payload import Payload
from autotune.traffic.requests import MAX_REQUESTS

# Requests in one turn of the mix: shares are kept to 1%.
MIX_TURN = 100


def mix_sequence(weights: Mapping[str, float], length: int = MIX_TURN) -> list[str]:
    """LENGTH model names in the proportion of WEIGHTS, spread evenly (smooth weighted round robin)."""
    total = sum(weights.values())
    credit = dict.fromkeys(weights, 0.0)
    out = []
    for _ in range(length):
        for name, weight in weights.items():
            credit[name] += weight
        pick = max(credit, key=lambda n: credit[n])
        credit[pick] -= total
        out.append(pick)
    return out


def mixed_payloads(by_model: Mapping[str, list[Payload]], weights: Mapping[str, float]) -> list[Payload]:
    """One list the generator replays in turn: each model's requests, in the mix's proportion, every one of
    them at least once."""
    smallest = min(weights[n] / sum(weights.values()) for n in weights)
    longest = max(len(p) for p in by_model.values())
    turns = min(MAX_REQUESTS, max(MIX_TURN, math.ceil(longest / smallest)))
    seen = dict.fromkeys(by_model, 0)
    out = []
    for name in mix_sequence(weights, turns):
        out.append(by_model[name][seen[name] % len(by_model[name])])
        seen[name] += 1
    return out


def check_mix(weights: Mapping[str, float], names: Mapping[str, str]) -> None:
    """Refuse a mix whose weights are not positive or whose models would serve under one name (NAMES: spec ->
    served name)."""
    for spec, weight in weights.items():
        if not weight > 0:
            raise AutotuneError(f"mix: {spec}: the share must be > 0, got {weight!r}")
    served: dict[str, str] = {}
    for spec, name in names.items():
        if name in served:
            raise AutotuneError(f"mix: {served[name]} and {spec} would both serve as {name!r}")
        served[name] = spec


def models_config_text(bases: Mapping[str, str]) -> str:
    """A ModelServerConfig listing each model NAME -> BASE_PATH, as TF Serving's --model_config_file reads it."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    msg = model_server_config_pb2.ModelServerConfig()
    for name, base_path in bases.items():
        entry = msg.model_config_list.config.add()
        entry.name = name
        entry.base_path = base_path
        entry.model_platform = "tensorflow"
    return text_format.MessageToString(msg)
