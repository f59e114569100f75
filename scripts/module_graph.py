#!/usr/bin/env python3
"""Prints the crate's module import graph and any cycles in it.

Granularity: top-level modules of src/, and the direct children of src/tui, src/merge, src/io,
src/cli (so `tui::app -> tui::ui` shows). `use super::x` and `crate::a::b` paths both count.
Usage: scripts/module_graph.py [--dot] [--top]  (--top: top-level modules only)
"""
import os, re, sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(__file__), "..", "src")
SPLIT = set() if "--top" in sys.argv else {"tui", "merge", "io", "cli", "linalg", "bench"}

def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel and rel[0] in ("lib", "main"):
        return None
    if rel and rel[0] in SPLIT and len(rel) > 1:
        return "::".join(rel[:2])
    return rel[0] if rel else None

def node(parts):
    if parts[0] in SPLIT and len(parts) > 1 and parts[1] not in ("self",):
        cand = "::".join(parts[:2])
        if os.path.exists(os.path.join(ROOT, parts[0], parts[1] + ".rs")) or os.path.isdir(os.path.join(ROOT, parts[0], parts[1])):
            return cand
    return parts[0]

edges = defaultdict(set)
for dirpath, _, files in os.walk(ROOT):
    for f in files:
        if not f.endswith(".rs"):
            continue
        p = os.path.join(dirpath, f)
        me = module_of(p)
        if me is None:
            continue
        src = open(p).read()
        src = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", src, flags=re.S)
        src = re.sub(r"//.*", "", src)  # comments and doc links are not imports
        parent = me.split("::")[0] if "::" in me else None
        for m in re.finditer(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", src):
            parts = m.group(2).strip(":").split("::")
            if m.group(1) == "super":
                if os.path.basename(p) == "mod.rs":
                    continue  # a mod.rs's super is the crate root (lib.rs)
                if parent is None:
                    continue
                parts = [parent] + parts
            if not parts or not parts[0].islower():
                continue
            target = node(parts)
            if target != me and not me.startswith(target + "::"):
                edges[me].add(target)

def sccs(graph):
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    nodes = set(graph) | {t for ts in graph.values() for t in ts}
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            out.append(comp)
    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]

if "--dot" in sys.argv:
    print("digraph modules {")
    for a in sorted(edges):
        for b in sorted(edges[a]):
            print(f'  "{a}" -> "{b}";')
    print("}")
else:
    for a in sorted(edges):
        print(f"{a} -> {', '.join(sorted(edges[a]))}")
cycles = sccs(edges)
for c in cycles:
    print("CYCLE:", " <-> ".join(sorted(c)), file=sys.stderr)
sys.exit(1 if cycles else 0)
