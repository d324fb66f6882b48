"""MkDocs hook: the REST API reference, generated from the API's OpenAPI schema at build time.

The schema is the one ``schema/`` serves (``user_credits.api.schema.api_schema``), so the page
cannot drift from the code. Adds ``rest-api-reference.md`` (operations by tag, then the
schemas) and ``openapi.yaml`` (the schema itself, to download) to the site.
"""

import sys
from http import HTTPStatus
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "api/credits/"
METHODS = ("get", "post", "put", "patch", "delete")


def django_schema():
    """The schema, from a minimal Django configuration (no database is touched)."""
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="docs",
            USE_TZ=True,
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "rest_framework",
                "django_filters",
                "drf_spectacular",
                "user_credits",
            ],
            DATABASES={},
            ROOT_URLCONF=None,
        )
        django.setup()
    from drf_spectacular.renderers import OpenApiYamlRenderer

    from user_credits.api.schema import api_schema

    schema = api_schema(PREFIX)
    return schema, OpenApiYamlRenderer().render(schema, renderer_context={}).decode()


def anchor(name):
    return f"schema-{name.lower()}"


def type_of(spec):
    """A short Markdown description of a JSON schema: its type, or a link to a component."""
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[1]
        return f"[`{name}`](#{anchor(name)})"
    if "allOf" in spec and len(spec["allOf"]) == 1:
        return type_of(spec["allOf"][0])
    if "oneOf" in spec:
        return " or ".join(type_of(option) for option in spec["oneOf"])
    kind = spec.get("type", "any")
    if kind == "array":
        text = f"array of {type_of(spec.get('items', {}))}"
    elif "enum" in spec:
        text = " \\| ".join(f"`{value}`" for value in spec["enum"] if value is not None)
    else:
        text = kind + (f" ({spec['format']})" if "format" in spec else "")
    if spec.get("nullable"):
        text += ", nullable"
    return text


def cell(text):
    return " ".join(str(text or "").split()).replace("|", "\\|")


def body_type(content):
    media = next(iter(content.values()), {}) if content else {}
    return type_of(media["schema"]) if "schema" in media else ""


def render(schema):
    by_tag = {}
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                operation = item[method]
                tag = (operation.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((path, method, operation))
    lines = [
        "# REST API reference",
        "",
        f"Generated from the OpenAPI schema of user_credits {schema['info']['version']} when "
        "this site was built: the API serves the same schema at `schema/`. "
        "Download it as [openapi.yaml](openapi.yaml). Paths assume the API is mounted at "
        f"`/{PREFIX}`; authentication and permissions are described in [REST API](rest-api.md).",
        "",
    ]
    for tag, operations in sorted(by_tag.items()):
        lines += [f"## {tag.capitalize()}", ""]
        for path, method, operation in operations:
            lines += [f"### `{method.upper()} {path}`", ""]
            if operation.get("description"):
                lines += [operation["description"].strip(), ""]
            parameters = operation.get("parameters", [])
            if parameters:
                lines += [
                    "| parameter | in | type | required | description |",
                    "|---|---|---|---|---|",
                ]
                for p in parameters:
                    lines.append(
                        f"| `{p['name']}` | {p['in']} | {type_of(p.get('schema', {}))} | "
                        f"{'yes' if p.get('required') else 'no'} | {cell(p.get('description'))} |"
                    )
                lines.append("")
            request = operation.get("requestBody")
            if request:
                lines += [f"Request body: {body_type(request.get('content'))}", ""]
            lines += ["| status | body | meaning |", "|---|---|---|"]
            for status, response in operation.get("responses", {}).items():
                meaning = cell(response.get("description")) or HTTPStatus(int(status)).phrase
                lines.append(f"| {status} | {body_type(response.get('content'))} | {meaning} |")
            lines.append("")
    lines += ["## Schemas", ""]
    for name, spec in sorted(schema.get("components", {}).get("schemas", {}).items()):
        lines += [f"### {name} {{#{anchor(name)}}}", ""]
        if spec.get("description"):
            lines += [spec["description"].strip(), ""]
        if "properties" in spec:
            required = set(spec.get("required", []))
            lines += ["| field | type | required | notes |", "|---|---|---|---|"]
            for field, field_spec in spec["properties"].items():
                notes = []
                if field_spec.get("readOnly"):
                    notes.append("read-only")
                if field_spec.get("writeOnly"):
                    notes.append("write-only")
                for key in ("minimum", "maximum", "maxLength", "default"):
                    if key in field_spec:
                        notes.append(f"{key} {field_spec[key]}")
                if field_spec.get("description"):
                    notes.append(cell(field_spec["description"]))
                lines.append(
                    f"| `{field}` | {type_of(field_spec)} | "
                    f"{'yes' if field in required else 'no'} | {'; '.join(notes)} |"
                )
        else:
            lines.append(f"{type_of(spec)}")
            if spec.get("enum"):
                lines.append("")
        lines.append("")
    return "\n".join(lines)


def on_files(files, config):
    schema, yaml = django_schema()
    files.append(File.generated(config, "rest-api-reference.md", content=render(schema)))
    files.append(File.generated(config, "openapi.yaml", content=yaml))
    return files
