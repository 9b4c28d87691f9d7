"""The README stays a front page and docs/api stays a complete API reference.

The OpenAPI documents are built from the real FastAPI apps (`scripts/api_docs.py`
builds them on a throw-away home: the signer opens no HSM until a request needs
it), so a route added to either service without its reference fails here.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from signet.common.contracts.signer import SignOptions

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))


def _api_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_docs", ROOT / "scripts" / "api_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("api_docs", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def api_docs() -> ModuleType:
    return _api_docs()


@pytest.fixture(scope="module")
def documents(api_docs: ModuleType) -> dict[str, Any]:
    docs: dict[str, Any] = api_docs.openapi_documents()
    return docs


def test_every_route_of_the_openapi_documents_is_in_the_api_reference(
    api_docs: ModuleType, documents: dict[str, Any]
) -> None:
    reference = "\n".join(page.read_text() for page in API_PAGES)
    missing = [
        f"{service}: {method} {path}"
        for service, document in documents.items()
        for method, path in api_docs.routes(document)
        if f"`{method} {path}`" not in reference
    ]
    assert len(api_docs.routes(documents["signer"])) >= 15  # the apps were really built
    assert not missing, f"routes missing from docs/api/*.md: {missing}"


def test_the_generated_route_reference_is_current(
    api_docs: ModuleType, documents: dict[str, Any]
) -> None:
    """Models and parameters too: run `.venv/bin/python scripts/api_docs.py` after a change."""
    for service, document in documents.items():
        page = api_docs.page(service)
        assert page.read_text() == api_docs.updated(service, document), (
            f"{page.name} is out of date: run .venv/bin/python scripts/api_docs.py"
        )


def test_sign_options_are_documented_field_by_field() -> None:
    text = (ROOT / "docs" / "api" / "signer.md").read_text()
    section = text.split("## `SignOptions`, field by field", 1)[1].split("<!-- BEGIN", 1)[0]
    rows = set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
    assert rows == set(SignOptions.model_fields), "hand-written SignOptions table drifted"


def test_readme_is_a_front_page_under_150_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"


def _two_commands() -> list[str]:
    text = README.read_text()
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "no ```sh block under 'The two commands'"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_two_commands_are_exactly_make_up_and_make_test() -> None:
    assert _two_commands() == ["make up", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^up:", makefile, re.MULTILINE)
    assert re.search(r"^test:", makefile, re.MULTILINE)


def test_every_docs_page_is_in_the_nav_and_every_readme_link_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav: Any) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        return []

    in_nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk <= in_nav, f"pages not in mkdocs.yml's nav: {sorted(on_disk - in_nav)}"
    links = re.findall(r"\]\((docs/[^)#]+)", README.read_text())
    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_every_route_is_in_the_hostile_input_table(
    api_docs: ModuleType, documents: dict[str, Any]
) -> None:
    """docs/admin/hostile-input.md's table (measured by tests/e2e/test_hostile_table.py)
    has a line for every route: a route added without running that test fails here."""
    page = (ROOT / "docs" / "admin" / "hostile-input.md").read_text(encoding="utf-8")
    table = page.split("<!-- hostile-table:start -->", 1)[1].split("<!-- hostile-table:end -->")[0]
    missing = [
        f"{service}: {method} {path}"
        for service, document in documents.items()
        for method, path in api_docs.routes(document)
        if f"| {service} | `{method} {path}` |" not in table
    ]
    assert not missing, f"run tests/e2e/test_hostile_table.py (SIGNET_UPDATE_DOCS=1): {missing}"
