#!/usr/bin/env python3
"""Import cycles between lite2pg's modules: builds the graph from `crate::` and `super::` paths in src/ (unit tests
left out) and prints each strongly connected component; exits 1 when there is one. Usage: .ci/import_cycles.py [src]"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
mods = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        path = os.path.join(dp, f)
        rel = os.path.relpath(path, root)[:-3].split(os.sep)
        if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
        mods['::'.join(rel)] = open(path).read()
names = set(mods)
def resolve(p):
    parts = p.split('::')
    for n in range(len(parts), 0, -1):
        c = '::'.join(parts[:n])
        if c in names: return c
    return None
graph = {m: set() for m in names}
for m, text in mods.items():
    text = re.sub(r'#\[cfg\(test\)\]\s*mod tests\s*\{.*', '', text, flags=re.S)
    for p in re.findall(r'crate::((?:[a-z_0-9]+::)*[a-z_0-9]+)', text):
        t = resolve(p)
        # A module and its own submodules (pg and pg::state) are one unit: Rust's parent-child links are not cycles.
        related = t is not None and (t == m or m.startswith(t + '::') or t.startswith(m + '::'))
        if t and m and not related:
            graph[m].add(t)
    # super:: references
    parent = '::'.join(m.split('::')[:-1])
    for p in re.findall(r'\bsuper::([a-z_0-9]+)', text):
        t = resolve((parent + '::' + p) if parent else p)
        if t and t != m: graph[m].add(t)
idx, low, st, on, out, c = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in graph[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(sorted(comp))
for v in sorted(graph):
    if v not in idx: sc(v)
for comp in out: print(len(comp), ' '.join(comp))
sys.exit(1 if out else 0)
