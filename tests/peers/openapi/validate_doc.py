"""Static checks of an OpenAPI 3.1 document, for check.sh (run with the openapi venv's python).

    python validate_doc.py openapi.json   -> prints "N operations", exit 0; or the problems, exit 1

Schemathesis only reports meta-schema errors of the document when an operation fails to
load, so this checks the whole document up front:
  - the OpenAPI 3.1 meta-schema (the copy schemathesis ships, so no download);
  - each Schema Object against the JSON Schema 2020-12 meta-schema (the OAS meta-schema
    leaves them open);
  - every local $ref resolves;
  - operationIds are unique; each {param} of a path template is declared `in: path`,
    required, and each declared path parameter is in the template.
"""

import json
import re
import sys

import jsonschema_rs
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def pointer(doc, ref):
    node = doc
    for part in ref[2:].split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node[part]
    return node


def ptr(parts):
    """A JSON pointer, for messages."""
    return "#/" + "/".join(str(x).replace("~", "~0").replace("/", "~1") for x in parts)


def walk(node, path):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + [k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + [str(i)])


def schema_objects(doc):
    """(location, schema) of each top-level Schema Object in the document."""
    for name, s in doc.get("components", {}).get("schemas", {}).items():
        yield ptr(["components", "schemas", name]), s
    for loc, node in walk(doc.get("paths", {}), ["paths"]):
        if isinstance(node, dict) and "schema" in node and isinstance(node["schema"], (dict, bool)):
            # parameters, media types and headers all hold their schema under `schema`
            if loc and loc[-1] == "properties":
                continue
            yield ptr(loc + ["schema"]), node["schema"]


def main(path):
    doc = json.load(open(path))
    problems = []

    if not str(doc.get("openapi", "")).startswith("3.1"):
        problems.append(f"openapi is {doc.get('openapi')!r}, expected 3.1.x")
    for e in OPENAPI_31_VALIDATOR.iter_errors(doc):
        problems.append(f"OpenAPI 3.1 meta-schema: {ptr(e.instance_path)}: {e.message}")

    for loc, s in schema_objects(doc):
        if isinstance(s, dict):
            s = dict(s, **{"$schema": DIALECT})
        try:
            jsonschema_rs.meta.validate(s)
        except jsonschema_rs.ValidationError as e:
            problems.append(f"JSON Schema 2020-12 meta-schema: {loc}: {e.message}")

    for loc, node in walk(doc, []):
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if not ref.startswith("#"):
                problems.append(f"{ptr(loc)}: non-local $ref {ref!r}")
                continue
            try:
                pointer(doc, ref)
            except (KeyError, IndexError, ValueError, TypeError):
                problems.append(f"{ptr(loc)}: $ref {ref!r} does not resolve")

    seen_ids = {}
    count = 0
    for p, item in doc.get("paths", {}).items():
        template = set(re.findall(r"\{([^}]+)\}", p))
        shared = item.get("parameters", [])
        for m in METHODS:
            op = item.get(m)
            if op is None:
                continue
            count += 1
            where = f"{m.upper()} {p}"
            oid = op.get("operationId")
            if oid is not None:
                if oid in seen_ids:
                    problems.append(f"{where}: operationId {oid!r} also used by {seen_ids[oid]}")
                seen_ids[oid] = where
            params = []
            for prm in shared + op.get("parameters", []):
                if isinstance(prm, dict) and "$ref" in prm:
                    try:
                        prm = pointer(doc, prm["$ref"])
                    except (KeyError, IndexError, ValueError, TypeError):
                        continue
                params.append(prm)
            declared = {x.get("name") for x in params if x.get("in") == "path"}
            for name in sorted(template - declared):
                problems.append(f"{where}: path parameter {{{name}}} is not declared")
            for name in sorted(declared - template):
                problems.append(f"{where}: parameter {name!r} is `in: path` but not in the path template")
            for x in params:
                if x.get("in") == "path" and x.get("required") is not True:
                    problems.append(f"{where}: path parameter {x.get('name')!r} must be required: true")

    if count == 0:
        problems.append("the document has no operations")
    if problems:
        for line in problems:
            print(f"openapi document: {line}")
        return 1
    print(f"{count} operations")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
