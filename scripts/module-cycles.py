#!/usr/bin/env python3
"""Finds import cycles between the files of each crate under crates/.

    scripts/module-cycles.py [crate-dir ...]      (default: every crates/*)

A file refers to another file of its crate when it names one of its modules with a
`crate::`, `super::` or `self::` path, or a path that starts with one of its own
child modules, in a `use` item (nested groups included) or in a qualified path in
code. Names re-exported by another module (`crate::Cache`, re-exported by lib.rs
from cache.rs) count as references to the module that defines them. Inline modules
(`#[cfg(test)] mod tests { ... }`) belong to the file they are written in. Comments
and string literals are ignored.

Each crate root (src/lib.rs, src/main.rs, src/bin/*.rs) is checked on its own. Every
strongly connected component of more than one file is a cycle: it is printed with the
references that form it, and the script exits with status 1. No dependencies.
"""

import os
import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


# ---------------------------------------------------------------------------
# Lexing: blank out comments and literals, keep offsets and line numbers.
# ---------------------------------------------------------------------------


def clean(src):
    """The source with comments, strings and char literals replaced by spaces
    (newlines kept), so that offsets and line numbers still match."""
    out = list(src)
    i, n = 0, len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rb" and re.match(r"(?:br|r)#*\"", src[i:i + 260]) and not _ident_before(src, i):
            m = re.match(r"(?:br|r)(#*)\"", src[i:])
            end = src.find('"' + m.group(1), i + m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            blank(i, j)
            i = j
        elif c == '"' or (c == "b" and src.startswith('b"', i) and not _ident_before(src, i)):
            j = i + (2 if c == "b" else 1)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'" or (c == "b" and src.startswith("b'", i) and not _ident_before(src, i)):
            start = i + (2 if c == "b" else 1)
            m = re.match(r"(\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'", src[start:start + 12])
            if m:  # a char literal; otherwise a lifetime or label
                blank(i, start + m.end())
                i = start + m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def _ident_before(src, i):
    return i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def matching_brace(text, open_at):
    depth = 0
    for k in range(open_at, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(text)


# ---------------------------------------------------------------------------
# `use` trees
# ---------------------------------------------------------------------------


def split_top(s, sep=","):
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def expand_use(tree, prefix=()):
    """Flattens a use tree into (path segments, name it binds or '*' or None)."""
    tree = re.sub(r"\s+", " ", tree).strip()
    if tree.startswith("::"):
        tree = tree[2:].strip()
    if tree.startswith("{") and tree.endswith("}"):
        out = []
        for part in split_top(tree[1:-1]):
            out += expand_use(part, prefix)
        return out
    # `a::b::{...}`: split at the first `::` outside braces
    depth = 0
    for k in range(len(tree) - 1):
        if tree[k] == "{":
            depth += 1
        elif tree[k] == "}":
            depth -= 1
        elif depth == 0 and tree.startswith("::", k):
            head, rest = tree[:k].strip(), tree[k + 2:].strip()
            return expand_use(rest, prefix + (head,))
    m = re.fullmatch(r"(\S+?)(?: as (\S+))?", tree)
    if not m:
        return []
    name, alias = m.group(1), m.group(2)
    if name == "*":
        return [(prefix, "*")]
    if name == "self":
        return [(prefix, alias or (prefix[-1] if prefix else None))]
    return [(prefix + (name,), alias or name)]


# ---------------------------------------------------------------------------
# The module tree of one crate root
# ---------------------------------------------------------------------------


class Module:
    def __init__(self, path, file, inline_range=None):
        self.path = path  # tuple of names from the crate root
        self.file = file  # the file it is written in
        self.inline_range = inline_range  # (start, end) offsets when inline
        self.children = {}  # name -> Module
        self.imports = {}  # name -> (context module, path segments) from `use`
        self.globs = []  # (context module, path segments)
        self.defines = set()  # names of items defined here


ITEM_RE = re.compile(
    r"\b(?:fn|struct|enum|union|trait|type|const|static|macro_rules!)\s+(" + IDENT + ")"
)


class Crate:
    def __init__(self, root_file):
        self.root_file = root_file
        self.modules = {}  # path -> Module
        self.files = {}  # file -> (module path, cleaned text, original text)
        self.uses = []  # (module, offset, segments, name)
        self.load_file(root_file, ())

    def load_file(self, file, path):
        if file in self.files or not file.exists():
            return
        original = file.read_text(encoding="utf-8", errors="replace")
        text = clean(original)
        self.files[file] = (path, text, original)
        module = Module(path, file)
        self.modules[path] = module
        self.scan(file, text, original, module, 0, len(text))

    def scan(self, file, text, original, module, start, end):
        """Reads declarations in text[start:end] that belong to `module` (not to the
        inline modules nested in it, which are scanned on their own)."""
        k = start
        mod_re = re.compile(r"\bmod\s+(" + IDENT + r")\s*([;{])")
        inline = []
        while True:
            m = mod_re.search(text, k, end)
            if not m:
                break
            name = m.group(1)
            if m.group(2) == "{":
                open_at = m.end() - 1
                close = matching_brace(text, open_at)
                child = Module(module.path + (name,), file, (open_at, close))
                module.children[name] = child
                self.modules[child.path] = child
                inline.append((open_at, close))
                self.scan(file, text, original, child, open_at + 1, close)
                k = close + 1
            else:
                child_file = self.child_file(file, module, name, original, m.start())
                module.children[name] = None  # filled once loaded
                self.load_file(child_file, module.path + (name,))
                module.children[name] = self.modules.get(module.path + (name,))
                k = m.end()
        # `use` items and item definitions outside the nested inline modules
        def outside(offset):
            return start <= offset < end and not any(a <= offset <= b for a, b in inline)

        for m in re.finditer(r"\buse\s+([^;]+);", text[start:end]):
            offset = start + m.start()
            tree = m.group(1)
            if not outside(offset) or tree.lstrip().startswith("<"):
                continue
            for segments, name in expand_use(tree):
                self.uses.append((module, offset, offset + m.end() - m.start(), segments, name))
                if name == "*":
                    module.globs.append((module, segments))
                elif name:
                    module.imports[name] = (module, segments)
        for m in ITEM_RE.finditer(text, start, end):
            if outside(m.start()):
                module.defines.add(m.group(1))

    def child_file(self, file, module, name, original, at):
        """Where `mod name;` declared in `file` lives (`#[path]` honoured)."""
        before = original[max(0, original.rfind(";", 0, at), original.rfind("}", 0, at)):at]
        attr = re.search(r"#\[\s*path\s*=\s*\"([^\"]+)\"\s*\]", before)
        is_mod_rs = file.name in ("lib.rs", "main.rs", "mod.rs") or file.parent.name == "bin"
        # The directory this file's child modules live in.
        if file.parent.name == "bin" and file.name != "mod.rs":
            base = file.parent
        elif is_mod_rs:
            base = file.parent
        else:
            base = file.parent / file.stem
        # Inline modules between the file's module and `module` add directories.
        file_path = self.files[file][0]
        for inline_name in module.path[len(file_path):]:
            base = base / inline_name
        if attr:  # relative to the declaring file's directory
            return file.parent / attr.group(1)
        for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
            if candidate.exists():
                return candidate
        return base / f"{name}.rs"

    # -- resolution -------------------------------------------------------

    def resolve(self, context, segments, depth=0):
        """The module a path written in `context` refers to (following re-exports),
        or None when it leaves the crate (std, dependencies) or is unknown."""
        if depth > 20 or not segments:
            return None
        first, rest = segments[0], list(segments[1:])
        if first in ("crate", "$crate"):
            base = ()
        elif first == "self":
            base = context.path
        elif first == "super":
            base = context.path[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif first in context.children:
            base, rest = context.path + (first,), rest
        elif first in context.imports and depth == 0:
            # `use crate::tier;` then `tier::redis::X`: resolved through the import.
            ctx, target = context.imports[first]
            return self.resolve(ctx, list(target) + rest, depth + 1)
        else:
            return None
        return self.walk(base, rest, depth)

    def walk(self, base, rest, depth):
        module = self.modules.get(base)
        if module is None:
            return None
        while rest:
            name = rest[0]
            if name in ("self",):
                rest = rest[1:]
                continue
            if name == "super":
                return self.walk(base[:-1], rest[1:], depth)
            child = module.children.get(name)
            if child is not None:
                module, base, rest = child, child.path, rest[1:]
                continue
            if name in module.imports and name not in module.defines:
                ctx, target = module.imports[name]
                resolved = self.resolve(ctx, list(target) + rest[1:], depth + 1)
                return resolved if resolved is not None else module
            return module
        return module

    def file_of(self, module):
        return module.file if module is not None else None


def references(crate):
    """(from file, to file, line, text) for every reference between two files."""
    refs = []
    use_spans = {}
    for module, start, end, segments, name in crate.uses:
        use_spans.setdefault(module.file, []).append((start, end))
        target = crate.resolve(module, list(segments)) if segments else None
        if name == "*" and segments:
            target = crate.resolve(module, list(segments))
        if target is not None and target.file != module.file:
            text = crate.files[module.file][1]
            refs.append((module.file, target.file, line_of(text, start), "use " + "::".join(segments)))
    path_re = re.compile(r"(\$?\b" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)")
    for file, (path, text, _original) in crate.files.items():
        spans = use_spans.get(file, [])
        stripped = re.sub(r"pub\s*\(\s*in\s+[^)]*\)", lambda m: " " * len(m.group(0)), text)
        for m in path_re.finditer(stripped):
            if any(a <= m.start() < b for a, b in spans):
                continue
            if m.start() > 0 and stripped[m.start() - 1] == ":":
                continue  # the tail of a longer path, e.g. `std::fmt::...`
            first = m.group(1)
            segments = [first] + [s.strip() for s in m.group(2).split("::") if s.strip()]
            context = innermost(crate, file, path, m.start())
            if first not in ("crate", "$crate", "self", "super") and first not in context.children:
                continue
            target = crate.resolve(context, segments)
            if target is not None and target.file != file:
                refs.append((file, target.file, line_of(text, m.start()), "::".join(segments)))
    return refs


def innermost(crate, file, path, offset):
    best = crate.modules[path]
    for module in crate.modules.values():
        if module.file == file and module.inline_range:
            a, b = module.inline_range
            if a <= offset <= b and len(module.path) > len(best.path):
                best = module
    return best


# ---------------------------------------------------------------------------
# Strongly connected components (Tarjan, iterative)
# ---------------------------------------------------------------------------


def sccs(nodes, edges):
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                out.append(component)
    return out


def check_root(root_file, repo):
    crate = Crate(root_file)
    refs = references(crate)
    edges, why = {}, {}
    for a, b, line, text in refs:
        edges.setdefault(a, set()).add(b)
        why.setdefault((a, b), []).append((line, text))
    cycles = [sorted(c) for c in sccs(sorted(crate.files), edges) if len(c) > 1]
    rel = lambda f: os.path.relpath(f, repo)
    for component in cycles:
        print(f"cycle in {rel(root_file)}: " + ", ".join(rel(f) for f in component))
        members = set(component)
        for a in component:
            for b in sorted(edges.get(a, ())):
                if b in members:
                    line, text = why[(a, b)][0]
                    more = len(why[(a, b)]) - 1
                    extra = f" (+{more} more)" if more else ""
                    print(f"    {rel(a)}:{line} -> {rel(b)}: {text}{extra}")
    return len(crate.files), cycles


def main(argv):
    repo = Path(__file__).resolve().parent.parent
    crate_dirs = [Path(a).resolve() for a in argv] or sorted(
        d for d in (repo / "crates").iterdir() if (d / "src").is_dir()
    )
    found = 0
    for crate_dir in crate_dirs:
        src = crate_dir / "src"
        roots = [src / "lib.rs", src / "main.rs"] + sorted((src / "bin").glob("*.rs"))
        for root in roots:
            if not root.exists():
                continue
            files, cycles = check_root(root, repo)
            found += len(cycles)
            status = "no cycles" if not cycles else f"{len(cycles)} cycle(s)"
            print(f"{os.path.relpath(root, repo)}: {files} files, {status}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
