"""Build KServe resources through the ``kserve`` SDK's typed models; run by an interpreter that has the SDK.

The SDK pins ``psutil<6`` and ``pandas<3``, which clash with honed's own dependencies, so it can live in a
separate virtualenv (see .ci/run): the test hands this script the objects honed generated as JSON on stdin
and reads a JSON verdict on stdout. It imports only the SDK and the kubernetes client, never honed.

Every InferenceService and ServingRuntime is built as ``V1beta1InferenceService`` / ``V1alpha1ServingRuntime``
field by field through the models' own ``openapi_types`` (an unknown field fails), then turned back into
JSON through their ``attribute_map``; the round trip must give back the object unchanged.
"""

from __future__ import annotations

import json
import sys
from typing import Any

KINDS = {"InferenceService": "V1beta1InferenceService", "ServingRuntime": "V1alpha1ServingRuntime"}
SCALARS = ("str", "int", "bool", "float", "object", "datetime", "StrictStr", "StrictInt", "StrictBool")


class UnknownField(Exception):
    pass


def typed(data: Any, type_name: str, namespaces: tuple[Any, ...]) -> Any:
    """The SDK's typed model for ``type_name`` built from JSON data; an unknown key raises UnknownField."""
    if type_name.startswith(("list[", "List[")):
        return [typed(v, type_name[5:-1], namespaces) for v in data]
    if type_name.startswith(("dict(", "Dict[")):
        inner = type_name[5:-1].split(", ", 1)[1]
        return {k: typed(v, inner, namespaces) for k, v in data.items()}
    if type_name in SCALARS:
        return data
    klass = next(getattr(ns, type_name) for ns in namespaces if hasattr(ns, type_name))
    by_json = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    unknown = set(data) - set(by_json)
    if unknown:
        raise UnknownField(f"{type_name} has no field(s) {sorted(unknown)}")
    kwargs = {by_json[k]: typed(v, klass.openapi_types[by_json[k]], namespaces) for k, v in data.items()}
    return klass(**kwargs)


def plain(obj: Any) -> Any:
    """A typed model back as JSON data, through the models' own attribute maps."""
    if hasattr(obj, "attribute_map"):
        values = {key: plain(getattr(obj, attr)) for attr, key in obj.attribute_map.items()}
        # Unset fields come back None (or "" for the container name the SDK defaults in ModelSpec).
        return {k: v for k, v in values.items() if v is not None and v != ""}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj


def main() -> int:
    import kserve
    import kubernetes.client

    namespaces = (kserve, kubernetes.client)
    checked, errors = [], []
    for obj in json.load(sys.stdin):
        kind = KINDS.get(obj.get("kind"))
        if kind is None:
            continue
        name = f"{obj['kind']}/{obj.get('metadata', {}).get('name')}"
        try:
            back = plain(typed(obj, kind, namespaces))
        except (UnknownField, TypeError, ValueError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        if back != obj:
            errors.append(f"{name}: the typed model does not give the object back ({back!r})")
        else:
            checked.append(name)
    version = getattr(kserve, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("kserve")
    json.dump({"kserve": version, "checked": checked, "errors": errors}, sys.stdout)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
