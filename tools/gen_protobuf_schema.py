"""
Generate clusternet/sandbox/_protobuf_schema.py from the Kubernetes sources.

The protobuf wire layout (field numbers, wire types, message types) comes from
the ``generated.proto`` files; the JSON side (json names, ``omitempty``,
pointer fields, ``json:",inline"`` embedding, ``json:"-"``) comes from the Go
struct tags of the same types, because the JSON form is what the Go types
marshal to and a few proto names differ from the json names (``uID`` is
``uid``).

Usage (from the repository root)::

    python tools/gen_protobuf_schema.py \
        [--api /work/.mirror/kubernetes+api/repo] \
        [--apimachinery /work/.mirror/kubernetes+apimachinery/repo] \
        [--ref kubernetes-1.32.13] [--output clusternet/sandbox/_protobuf_schema.py]

Both arguments are git directories (bare mirrors are fine); files are read with
``git show REF:PATH``.  The output is formatted so ``ruff format`` leaves it
alone.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Flags of a field, as written into the schema (keep in step with _protobuf.py).
REPEATED = 1
MAP = 2
POINTER = 4
OMITEMPTY = 8
INLINE = 16
HIDDEN = 32

SCALARS = frozenset(
    {
        "double",
        "float",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "sint32",
        "sint64",
        "fixed32",
        "fixed64",
        "sfixed32",
        "sfixed64",
        "bool",
        "string",
        "bytes",
    }
)

# Go types whose JSON form is not the struct's fields (custom MarshalJSON).
SPECIAL = {
    "apis.meta.v1.Time": "time",
    "apis.meta.v1.MicroTime": "microtime",
    "apis.meta.v1.Duration": "duration",
    "apis.meta.v1.FieldsV1": "fieldsv1",
    "runtime.RawExtension": "rawext",
    "api.resource.Quantity": "quantity",
    "api.resource.QuantityValue": "quantity",
    "util.intstr.IntOrString": "intorstring",
}

APIMACHINERY_DIRS = (
    "pkg/apis/meta/v1",
    "pkg/apis/meta/v1beta1",
    "pkg/runtime",
    "pkg/runtime/schema",
    "pkg/api/resource",
    "pkg/util/intstr",
)


@dataclass
class ProtoField:
    label: str  # "optional", "repeated", "map"
    type: str  # scalar or fully qualified message name (map: value type)
    key_type: str  # map key type, else ""
    name: str
    number: int


@dataclass
class ProtoMessage:
    name: str
    nullable: bool
    fields: list[ProtoField] = field(default_factory=list)


@dataclass
class GoField:
    go_name: str
    go_type: str
    json_name: str
    omitempty: bool
    inline: bool
    hidden: bool


def git(repo: str, *args: str) -> str:
    executable = shutil.which("git")
    if executable is None:
        raise SystemExit("git is not installed")
    return subprocess.run(  # noqa: S603 - a fixed git command, no shell
        [executable, "-C", repo, *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def git_show(repo: str, ref: str, path: str) -> str:
    return git(repo, "show", f"{ref}:{path}")


def git_ls(repo: str, ref: str, path: str) -> list[str]:
    return git(repo, "ls-tree", "--name-only", f"{ref}:{path}").split()


def alias(package: str) -> str:
    for prefix in ("k8s.io.api.", "k8s.io.apimachinery.pkg."):
        if package.startswith(prefix):
            return package[len(prefix) :]
    raise ValueError(f"unexpected proto package {package}")


_FIELD = re.compile(
    r"^\s*(?:(optional|repeated|required)\s+(\S+)|map<\s*(\w+)\s*,\s*(\S+)\s*>)"
    r"\s+(\w+)\s*=\s*(\d+)\s*(?:\[[^\]]*\])?\s*;"
)


def parse_proto(text: str) -> tuple[str, list[ProtoMessage]]:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    package = ""
    messages: list[ProtoMessage] = []
    current: ProtoMessage | None = None
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            comments.append(stripped)
            continue
        if not stripped:
            if current is None:
                comments = []
            continue
        if m := re.match(r"package\s+([\w.]+)\s*;", stripped):
            package = m.group(1)
        elif m := re.match(r"message\s+(\w+)\s*\{", stripped):
            if current is not None:
                raise ValueError(f"nested message {m.group(1)} not supported")
            nullable = any("+protobuf.nullable=true" in c for c in comments)
            current = ProtoMessage(m.group(1), nullable)
        elif stripped == "}":
            if current is None:
                raise ValueError("unbalanced }")
            messages.append(current)
            current = None
        elif m := _FIELD.match(line):
            if current is None:
                raise ValueError(f"field outside message: {line}")
            label, ftype, key, value, name, number = m.groups()
            if key is not None:
                current.fields.append(ProtoField("map", value, key, name, int(number)))
            else:
                current.fields.append(
                    ProtoField(
                        "repeated" if label == "repeated" else "optional",
                        ftype,
                        "",
                        name,
                        int(number),
                    )
                )
        elif re.match(r"(syntax|import|option)\b", stripped):
            pass
        else:
            raise ValueError(f"cannot parse proto line: {line!r}")
        if not stripped.startswith("//"):
            comments = []
    return package, messages


_STRUCT = re.compile(r"^type\s+(\w+)\s+struct\s*\{\s*$")
_ALIAS = re.compile(r"^type\s+(\w+)\s+(?:\w+\.)?([A-Z]\w*)\s*$")
_GO_FIELD = re.compile(
    r"^\s*(\w+\s+)?(\*?[\w.\[\]*]+(?:\[[\w.]+\][\w.\[\]*]+)?)\s+`([^`]*)`"
)


def parse_tag(tag: str, key: str) -> str | None:
    m = re.search(rf'(?:^|\s){key}:"([^"]*)"', tag)
    return m.group(1) if m else None


def parse_go(
    texts: list[str],
) -> tuple[dict[str, dict[int, GoField]], set[str], dict[str, str]]:
    """
    Struct name -> proto field number -> Go field; the names of the structs
    that inline TypeMeta (the kinds); named types defined as another struct
    (``type List metav1.List``) -> that struct's name.
    """
    structs: dict[str, dict[int, GoField]] = {}
    kinds: set[str] = set()
    aliases: dict[str, str] = {}
    for text in texts:
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        current: str | None = None
        for line in text.splitlines():
            if current is None:
                if m := _ALIAS.match(line):
                    aliases[m.group(1)] = m.group(2)
                elif m := _STRUCT.match(line):
                    current = m.group(1)
                    structs.setdefault(current, {})
                continue
            if line.startswith("}"):
                current = None
                continue
            stripped = line.strip()
            if stripped.startswith("//") or not stripped:
                continue
            m = _GO_FIELD.match(line)
            if not m:
                continue
            name_part, go_type, tag = m.groups()
            json_tag = parse_tag(tag, "json")
            if name_part is None:
                go_name = go_type.lstrip("*").rpartition(".")[2]
                embedded = True
            else:
                go_name = name_part.strip()
                embedded = False
            if embedded and go_name == "TypeMeta" and json_tag == ",inline":
                kinds.add(current)
            proto_tag = parse_tag(tag, "protobuf")
            if proto_tag is None or proto_tag == "-":
                continue
            number = int(proto_tag.split(",")[1])
            parts = (json_tag or "").split(",")
            json_name = parts[0]
            options = set(parts[1:])
            inline = "inline" in options or (embedded and json_tag is None)
            hidden = json_name == "-" and not options
            if not json_name and not inline:
                json_name = go_name
            structs[current][number] = GoField(
                go_name=go_name,
                go_type=go_type,
                json_name="" if inline else json_name,
                omitempty="omitempty" in options,
                inline=inline,
                hidden=hidden,
            )
    return structs, kinds, aliases


def resolve(ftype: str, package: str) -> str:
    if ftype in SCALARS:
        return ftype
    if ftype.startswith("."):
        full = ftype[1:]
    elif "." in ftype:
        full = ftype
    else:
        full = f"{package}.{ftype}"
    pkg, _, name = full.rpartition(".")
    return f"{alias(pkg)}.{name}"


@dataclass
class Package:
    alias: str
    api_version: str | None
    messages: list[ProtoMessage]
    go: dict[str, dict[int, GoField]]
    kinds: set[str]
    proto_package: str
    aliases: dict[str, str]


def load_package(repo: str, ref: str, directory: str) -> Package:
    proto_package, messages = parse_proto(
        git_show(repo, ref, f"{directory}/generated.proto")
    )
    names = git_ls(repo, ref, directory)
    go_texts = [
        git_show(repo, ref, f"{directory}/{name}")
        for name in names
        if name.endswith(".go")
        and not name.endswith("_test.go")
        and not name.startswith("zz_generated")
        and name != "generated.pb.go"
    ]
    go, kinds, aliases = parse_go(go_texts)
    api_version = None
    if "register.go" in names:
        m = re.search(
            r'GroupName\s*=\s*"([^"]*)"',
            git_show(repo, ref, f"{directory}/register.go"),
        )
        if m:
            version = directory.rstrip("/").rpartition("/")[2]
            api_version = f"{m.group(1)}/{version}" if m.group(1) else version
    return Package(
        alias(proto_package), api_version, messages, go, kinds, proto_package, aliases
    )


def link_aliases(packages: list[Package]) -> None:
    """
    Give a message whose Go type is another package's struct (``type
    MatchCondition v1.MatchCondition``) the Go fields of that struct: the one
    named so whose proto message has the same fields.
    """
    shapes: dict[tuple[str, tuple[tuple[int, str], ...]], Package] = {}
    for pkg in packages:
        for message in pkg.messages:
            if pkg.go.get(message.name):
                shape = tuple((f.number, f.name) for f in message.fields)
                shapes.setdefault((message.name, shape), pkg)
    for pkg in packages:
        for message in pkg.messages:
            target = pkg.aliases.get(message.name)
            if target is None or pkg.go.get(message.name):
                continue
            shape = tuple((f.number, f.name) for f in message.fields)
            source = shapes.get((target, shape))
            if source is not None:
                pkg.go[message.name] = source.go[target]
                if target in source.kinds:
                    pkg.kinds.add(message.name)


def field_spec(
    message: ProtoMessage, pfield: ProtoField, pkg: Package, warnings: list[str]
) -> str:
    go = pkg.go.get(message.name, {}).get(pfield.number)
    value_type = resolve(pfield.type, pkg.proto_package)
    flags = 0
    if pfield.label == "repeated":
        flags |= REPEATED
    elif pfield.label == "map":
        flags |= MAP
    own_json = f"{pkg.alias}.{message.name}" in SPECIAL or message.nullable
    if go is None and not own_json:
        warnings.append(
            f"{pkg.alias}.{message.name}.{pfield.name} ({pfield.number}): no Go "
            "struct tag found; using the proto name with omitempty"
        )
    if go is None:
        json_name = pfield.name
        flags |= OMITEMPTY
    else:
        json_name = go.json_name
        if go.inline and value_type in SCALARS:
            # An embedded non-struct (time.Duration in metav1.Duration) is a
            # plain field named after its type.
            go.inline = False
            json_name = go.json_name or go.go_name
        if go.omitempty:
            flags |= OMITEMPTY
        if go.inline:
            flags |= INLINE
        if go.hidden:
            flags |= HIDDEN
        if go.go_type.startswith("*"):
            flags |= POINTER
        if json_name and json_name != pfield.name:
            warnings.append(
                f"note: {pkg.alias}.{message.name}.{pfield.name} is json {json_name!r}"
            )
    for text in (json_name, value_type):
        if not re.fullmatch(r"[\w./-]*", text):
            raise ValueError(f"unexpected characters in {text!r}")
    parts = [str(pfield.number), json_name, str(flags)]
    if pfield.label == "map":
        parts += [resolve(pfield.key_type, pkg.proto_package), value_type]
    else:
        parts.append(value_type)
    return ",".join(parts)


def q(text: str | None) -> str:
    """
    A Python string literal as ruff format writes it.
    """
    assert text is not None
    return json.dumps(text)


def generate(api: str, apimachinery: str, ref: str) -> tuple[str, list[str]]:
    packages: list[Package] = []
    for path in git(api, "ls-tree", "-r", "--name-only", ref).split():
        if path.endswith("/generated.proto"):
            packages.append(load_package(api, ref, path.rpartition("/")[0]))
    for directory in APIMACHINERY_DIRS:
        packages.append(load_package(apimachinery, ref, directory))
    link_aliases(packages)

    warnings: list[str] = []
    messages: dict[str, str] = {}
    lists: dict[str, str] = {}
    for pkg in packages:
        for message in pkg.messages:
            key = f"{pkg.alias}.{message.name}"
            if message.nullable:
                fields = message.fields
                if len(fields) != 1 or fields[0].label != "repeated":
                    raise ValueError(f"{key}: nullable but not a single repeated field")
                lists[key] = resolve(fields[0].type, pkg.proto_package)
            messages[key] = ";".join(
                field_spec(message, f, pkg, warnings) for f in message.fields
            )
    known = set(messages) | SCALARS
    for key, spec in messages.items():
        for part in filter(None, spec.split(";")):
            for t in part.split(",")[3:]:
                if t not in known:
                    raise ValueError(f"{key}: unknown type {t}")

    out: list[str] = [
        "# ruff: noqa: E501",
        '"""',
        "Protobuf schema of the Kubernetes API types, for the sandbox's decoder.",
        "",
        "Generated by tools/gen_protobuf_schema.py from kubernetes/api and",
        f"kubernetes/apimachinery at {ref}; do not edit by hand.",
        "",
        "MESSAGES maps a message (proto package without its k8s.io prefix, then the",
        'name) to its fields in Go struct order, ";"-separated, each',
        '"number,jsonName,flags,type" or, for a map, "number,jsonName,flags,keyType,',
        'valueType".  Flags: 1 repeated, 2 map, 4 Go pointer, 8 omitempty, 16 inlined',
        '(json:",inline"), 32 not in JSON (json:"-").',
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f"SOURCE_REF = {q(ref)}",
        "",
        "# apiVersion -> message prefix (proto package without its k8s.io prefix).",
        "GROUP_VERSIONS: dict[str, str] = {",
    ]
    versioned = sorted(
        (p for p in packages if p.api_version is not None), key=lambda p: p.alias
    )
    for pkg in versioned:
        out.append(f"    {q(pkg.api_version)}: {q(pkg.alias)},")
    out.append("}")
    out.append("")
    out.append("# Message prefix -> its kinds (the types that inline TypeMeta).")
    out.append("KINDS: dict[str, str] = {")
    for pkg in versioned:
        kinds = " ".join(
            sorted(k for k in pkg.kinds if any(m.name == k for m in pkg.messages))
        )
        out.append(f"    {q(pkg.alias)}: {q(kinds)},")
    out.append("}")
    out.append("")
    out.append("# Messages with a JSON form of their own (custom MarshalJSON in Go).")
    out.append("SPECIAL: dict[str, str] = {")
    for key, kind in sorted(SPECIAL.items()):
        out.append(f"    {q(key)}: {q(kind)},")
    out.append("}")
    out.append("")
    out.append(
        "# Messages that are Go slices (+protobuf.nullable): item type of field 1."
    )
    out.append("LISTS: dict[str, str] = {")
    for key, item in sorted(lists.items()):
        out.append(f"    {q(key)}: {q(item)},")
    out.append("}")
    out.append("")
    out.append("MESSAGES: dict[str, str] = {")
    for key, spec in sorted(messages.items()):
        out.append(f"    {q(key)}: {q(spec)},")
    out.append("}")
    out.append("")
    return "\n".join(out), warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default="/work/.mirror/kubernetes+api/repo")
    parser.add_argument(
        "--apimachinery", default="/work/.mirror/kubernetes+apimachinery/repo"
    )
    parser.add_argument("--ref", default="kubernetes-1.32.13")
    parser.add_argument(
        "--output",
        default=str(
            Path(__file__).resolve().parent.parent
            / "clusternet"
            / "sandbox"
            / "_protobuf_schema.py"
        ),
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    text, warnings = generate(args.api, args.apimachinery, args.ref)
    Path(args.output).write_text(text)
    problems = [w for w in warnings if not w.startswith("note:")]
    for warning in warnings if args.verbose else problems:
        print(warning, file=sys.stderr)
    print(
        f"wrote {args.output}: {text.count(chr(10))} lines, "
        f"{len(text)} bytes, {len(problems)} fields without Go tags",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
