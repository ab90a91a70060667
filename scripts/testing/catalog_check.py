#!/usr/bin/env python3
"""Checks what `sluice catalog` prints against the formats' own validators.

    catalog_check.py openapi FILE      openapi-spec-validator (OpenAPI 3.1)
    catalog_check.py asyncapi FILE     the AsyncAPI 3.0.0 JSON Schema (asyncapi/spec-json-schemas)
    catalog_check.py backstage FILE    Backstage's entity schemas (Entity, EntityMeta, API, Component),
                                       Backstage's name rule, and each API's definition by its type

Prints a JSON summary; exits 1 with every problem found. Runs in the .testbed/catalog venv
(scripts/setup.sh), with the schemas in Tests/Fixtures.
"""
import json
import pathlib
import re
import sys

import jsonschema
import yaml
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

FIXTURES = pathlib.Path(__file__).resolve().parent.parent.parent / "Tests" / "Fixtures"
# Backstage's rule for metadata.name (packages/catalog-model: KubernetesValidatorFunctions).
NAME = re.compile(r"^[a-zA-Z0-9]([-_.]?[a-zA-Z0-9])*$")


def asyncapi_problems(document):
    schema = json.loads((FIXTURES / "asyncapi-spec-json-schemas" / "3.0.0-without-$id.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(document)]


def openapi_problems(document):
    try:
        validate_openapi(document)
        return []
    except Exception as error:  # the validator's own exception types vary by version
        return [str(error)[:2000]]


def backstage_problems(documents):
    schemas = {}
    for path in (FIXTURES / "backstage-catalog-model-schemas").glob("*.schema.json"):
        schema = json.loads(path.read_text())
        schemas[schema["$id"]] = schema
    registry = Registry().with_resources((key, Resource.from_contents(value, default_specification=DRAFT7)) for key, value in schemas.items())
    kinds = {"API": schemas["ApiV1alpha1"], "Component": schemas["ComponentV1alpha1"]}
    problems = []
    names = set()
    for index, entity in enumerate(documents):
        where = f"document {index}"
        if not isinstance(entity, dict) or entity.get("kind") not in kinds:
            problems.append(f"{where}: not an API or Component entity")
            continue
        validator = jsonschema.Draft7Validator(kinds[entity["kind"]], registry=registry)
        problems += [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(entity)]
        name = entity.get("metadata", {}).get("name", "")
        if not (NAME.match(name) and len(name) <= 63):
            problems.append(f"{where}: metadata.name {name!r} breaks Backstage's name rule")
        names.add(name)
        spec = entity.get("spec", {})
        if entity["kind"] == "API":
            try:
                definition = json.loads(spec.get("definition", ""))
            except ValueError as error:
                problems.append(f"{where}: the definition is not JSON: {error}")
                continue
            check = {"openapi": openapi_problems, "asyncapi": asyncapi_problems}.get(spec.get("type"))
            if check is None:
                problems.append(f"{where}: unknown API type {spec.get('type')!r}")
            else:
                problems += [f"{where}: definition: {p}" for p in check(definition)]
    for index, entity in enumerate(documents):
        if isinstance(entity, dict) and entity.get("kind") == "Component":
            for api in entity.get("spec", {}).get("providesApis", []):
                if api not in names:
                    problems.append(f"document {index}: providesApis names {api!r}, which is not in the output")
    return problems


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("openapi", "asyncapi", "backstage"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    kind, path = sys.argv[1], sys.argv[2]
    text = pathlib.Path(path).read_text()
    if kind == "backstage":
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
        problems = backstage_problems(documents)
        summary = {"kind": kind, "entities": len(documents), "problems": problems}
    else:
        document = json.loads(text)
        problems = openapi_problems(document) if kind == "openapi" else asyncapi_problems(document)
        summary = {"kind": kind, "problems": problems}
    print(json.dumps(summary))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
