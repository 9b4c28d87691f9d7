"""No module of signet imports itself back, directly or through others.

A circle makes the import order decide what works (the schema circle registry →
migrations → batch tables → registry did: a table module imported first saw a half-made
registry).  The ``acyclic`` contract in ``.importlinter`` checks packages as wholes;
this checks every module, so a circle inside one package fails here even where the
contract lets a package-level loop through.
"""

from __future__ import annotations

import grimp


def _circles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = 0
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    imported = graph.find_modules_directly_imported_by(child) & modules
                    work.append((child, iter(sorted(imported))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_no_module_of_signet_imports_itself_back() -> None:
    graph = grimp.build_graph("signet", include_external_packages=False)
    modules = set(graph.modules)
    assert any(m.startswith("signet.signer.") for m in modules)  # the graph saw the code

    assert _circles(graph, modules) == []


def test_a_circle_is_found() -> None:
    """The finder itself: a graph with a circle a → b → c → a and a tail d → a."""
    graph = grimp.ImportGraph()
    for importer, imported in [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]:
        graph.add_import(importer=importer, imported=imported)
    assert _circles(graph, set(graph.modules)) == [["a", "b", "c"]]
