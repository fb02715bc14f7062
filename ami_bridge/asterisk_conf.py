"""Read Asterisk configuration files the way Asterisk does, without Asterisk.

Enough of ``main/config.c`` and ``pbx/pbx_config.c`` to check a PBX's
``manager.conf``, ``pjsip.conf`` and ``extensions.conf`` against what the
dialer expects: categories with templates (``[name](!)``, ``[name](tpl)``,
``[name](+)``), ``key = value`` and ``key => value``, ``;`` comments with
``\\;`` escapes and ``;-- block --;`` comments, ``#include`` and
``#tryinclude``.  On top of that, the dialplan: ``exten``/``same``/
``include`` lines, Asterisk's pattern matching and the order in which it
tries patterns, argument splitting, and the ``${...}`` references that
reach an application unfiltered.

Pure: nothing here opens a socket, and only :func:`load_config` reads files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ConfigError",
    "ConfigFile",
    "Context",
    "ContextMatcher",
    "Include",
    "Option",
    "Priority",
    "Section",
    "VariableReference",
    "dialplan_globals",
    "evaluate_filter",
    "find_extension",
    "load_config",
    "parse_config",
    "parse_dialplan",
    "pattern_matches",
    "sort_extensions",
    "split_args",
    "unfiltered_references",
    "variable_references",
]

IncludeLoader = Callable[[str], str | None]


class ConfigError(ValueError):
    """A line Asterisk would refuse, with where it is."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line


@dataclass(frozen=True, slots=True)
class Option:
    """One ``key = value`` line; ``inherited_from`` names the template it came from."""

    key: str
    value: str
    source: str
    line: int
    inherited_from: str | None = None


@dataclass(slots=True)
class Section:
    """A category: ``[name](templates)``, with its options in file order.

    ``options`` holds what Asterisk ends up with: the templates' options
    first (marked ``inherited_from``), then the section's own.
    """

    name: str
    source: str
    line: int
    is_template: bool = False
    templates: tuple[str, ...] = ()
    options: list[Option] = field(default_factory=list)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The last value of ``key`` (own values override inherited ones)."""
        values = self.get_all(key)
        return values[-1] if values else default

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [option.value for option in self.options if option.key.lower() == wanted]

    def keys(self) -> list[str]:
        return [option.key for option in self.options]


@dataclass(frozen=True, slots=True)
class Include:
    """An ``#include`` or ``#tryinclude`` directive and whether it was read."""

    target: str
    optional: bool
    found: bool
    source: str
    line: int


@dataclass(slots=True)
class ConfigFile:
    source: str
    sections: list[Section] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)

    def named(self, name: str) -> list[Section]:
        """Every section called ``name`` (pjsip.conf reuses names across types)."""
        return [section for section in self.sections if section.name == name]

    def section(self, name: str) -> Section:
        """The one section called ``name``; KeyError if none, ValueError if several."""
        found = self.named(name)
        if not found:
            raise KeyError(name)
        if len(found) > 1:
            raise ValueError(f"{len(found)} sections are called [{name}]")
        return found[0]

    def of_type(self, type_: str, *, templates: bool = False) -> list[Section]:
        """Sections whose ``type`` option is ``type_`` (pjsip.conf style)."""
        return [
            section
            for section in self.sections
            if (section.get("type") or "").lower() == type_.lower()
            and (templates or not section.is_template)
        ]


# --- the generic file format ------------------------------------------------

_CATEGORY = re.compile(r"^\[(?P<name>[^\]]*)\]\s*(?:\((?P<options>[^)]*)\))?\s*$")
_DIRECTIVE = re.compile(r"^#\s*(?P<name>include|tryinclude|exec)\s+(?P<arg>.+?)\s*$", re.I)


def _strip_comments(raw: str, in_block: bool) -> tuple[str, bool]:
    """Remove ``;`` and ``;-- --;`` comments; return the text and the block state."""
    out: list[str] = []
    index = 0
    while index < len(raw):
        if in_block:
            end = raw.find("--;", index)
            if end < 0:
                return "".join(out), True
            index = end + 3
            in_block = False
            continue
        char = raw[index]
        if char == "\\" and raw.startswith(";", index + 1):
            out.append(";")
            index += 2
            continue
        if char == ";":
            if raw.startswith(";--", index):
                in_block = True
                index += 3
                continue
            break
        out.append(char)
        index += 1
    return "".join(out), in_block


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    include_loader: IncludeLoader | None = None,
) -> ConfigFile:
    """Parse one configuration file.

    ``include_loader(target)`` returns the text of an included file, or
    None when it does not exist; without a loader every include counts as
    missing.  A missing ``#include`` is an error (Asterisk refuses the whole
    file); a missing ``#tryinclude`` is not.  ``#exec`` is never run.
    """
    config = ConfigFile(source=source)
    _parse_into(config, text, source, include_loader, depth=0, current=None)
    return config


def _parse_into(
    config: ConfigFile,
    text: str,
    source: str,
    include_loader: IncludeLoader | None,
    *,
    depth: int,
    current: Section | None,
) -> Section | None:
    if depth > 10:
        raise ConfigError(source, 1, "includes nested more than 10 deep")
    in_block = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line, in_block = _strip_comments(raw, in_block)
        line = line.strip()
        if not line:
            continue
        directive = _DIRECTIVE.match(line)
        if directive:
            current = _directive(config, directive, source, number, include_loader, depth, current)
            continue
        if line.startswith("["):
            current = _category(config, line, source, number)
            continue
        key, separator, value = line.partition("=")
        if not separator:
            raise ConfigError(source, number, f"expected 'key = value', got {line!r}")
        if value.startswith(">"):
            value = value[1:]
        key, value = key.strip(), value.strip()
        if not key:
            raise ConfigError(source, number, "empty option name")
        if current is None:
            raise ConfigError(source, number, f"option {key!r} outside of any [section]")
        current.options.append(Option(key, value, source, number))
    if in_block:
        raise ConfigError(source, len(text.splitlines()), "unterminated ;-- block comment")
    return current


def _directive(
    config: ConfigFile,
    match: re.Match[str],
    source: str,
    number: int,
    include_loader: IncludeLoader | None,
    depth: int,
    current: Section | None,
) -> Section | None:
    name = match["name"].lower()
    target = match["arg"].strip()
    if len(target) >= 2 and (target[0], target[-1]) in (('"', '"'), ("<", ">")):
        target = target[1:-1]
    if name == "exec":
        return current
    optional = name == "tryinclude"
    included = include_loader(target) if include_loader is not None else None
    config.includes.append(Include(target, optional, included is not None, source, number))
    if included is None:
        if not optional:
            raise ConfigError(source, number, f"#include {target!r}: no such file")
        return current
    # Asterisk reads an included file as if it were pasted in place: its
    # options continue the current section until it opens a new one.
    return _parse_into(config, included, target, include_loader, depth=depth + 1, current=current)


def _category(config: ConfigFile, line: str, source: str, number: int) -> Section:
    match = _CATEGORY.match(line)
    if not match:
        raise ConfigError(source, number, f"malformed section header {line!r}")
    name = match["name"].strip()
    if not name:
        raise ConfigError(source, number, "empty section name")
    flags = [flag.strip() for flag in (match["options"] or "").split(",") if flag.strip()]
    if "+" in flags:
        if len(flags) > 1:
            raise ConfigError(source, number, "(+) cannot be combined with other options")
        for section in reversed(config.sections):
            if section.name == name:
                return section
        raise ConfigError(source, number, f"[{name}](+) adds to a section not defined before")
    section = Section(
        name=name,
        source=source,
        line=number,
        is_template="!" in flags,
        templates=tuple(flag for flag in flags if flag != "!"),
    )
    for template_name in section.templates:
        template = next((s for s in reversed(config.sections) if s.name == template_name), None)
        if template is None:
            raise ConfigError(
                source, number, f"[{name}] inherits from [{template_name}], not defined before"
            )
        section.options.extend(
            Option(o.key, o.value, o.source, o.line, o.inherited_from or template_name)
            for o in template.options
        )
    config.sections.append(section)
    return section


def load_config(path: Path | str) -> ConfigFile:
    """Parse the file at ``path``; includes are looked up next to it."""
    base = Path(path)

    def loader(target: str) -> str | None:
        candidate = Path(target)
        if not candidate.is_absolute():
            candidate = base.parent / candidate
        try:
            return candidate.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    return parse_config(base.read_text(encoding="utf-8"), source=str(base), include_loader=loader)


# --- the dialplan -----------------------------------------------------------

_NOT_CONTEXTS = frozenset({"general", "globals"})


@dataclass(frozen=True, slots=True)
class Priority:
    """One step of an extension: ``exten => 123,1(label),App(data)``."""

    context: str
    extension: str
    priority: int
    label: str | None
    app: str
    data: str
    source: str
    line: int

    def args(self) -> list[str]:
        return split_args(self.data)


@dataclass(slots=True)
class Context:
    name: str
    priorities: list[Priority] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)

    def extensions(self) -> dict[str, list[Priority]]:
        """Extension name to its priorities, in file order."""
        result: dict[str, list[Priority]] = {}
        for step in self.priorities:
            result.setdefault(step.extension, []).append(step)
        return result


_PRIORITY = re.compile(r"^(?P<priority>\d+|n|next|hint)(?:\((?P<label>[^)]*)\))?$", re.I)
_APPLICATION = re.compile(r"^(?P<app>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\((?P<data>.*)\))?\s*$", re.S)


def dialplan_globals(config: ConfigFile) -> dict[str, str]:
    """The ``[globals]`` section as a dict (last value wins)."""
    values: dict[str, str] = {}
    for section in config.named("globals"):
        for option in section.options:
            values[option.key] = option.value
    return values


def parse_dialplan(config: ConfigFile) -> dict[str, Context]:
    """The contexts of an ``extensions.conf``, keyed by name."""
    contexts: dict[str, Context] = {}
    for section in config.sections:
        if section.name.lower() in _NOT_CONTEXTS or section.is_template:
            continue
        context = contexts.setdefault(section.name, Context(section.name))
        last: Priority | None = None
        for option in section.options:
            keyword = option.key.lower()
            if keyword == "include":
                context.includes.append(option.value.split(",")[0].strip())
            elif keyword in ("exten", "same"):
                last = _priority(context.name, keyword, option, last)
                if last.app.lower() != "hint":
                    context.priorities.append(last)
            elif keyword not in ("switch", "ignorepat", "lswitch", "eswitch"):
                raise ConfigError(option.source, option.line, f"unknown dialplan keyword {keyword}")
    return contexts


def _priority(context: str, keyword: str, option: Option, last: Priority | None) -> Priority:
    text = option.value
    if keyword == "exten":
        extension, _, text = text.partition(",")
        extension = extension.strip()
    else:
        if last is None:
            raise ConfigError(option.source, option.line, "'same =>' before any 'exten =>'")
        extension = last.extension
    priority_text, _, application = text.partition(",")
    match = _PRIORITY.match(priority_text.strip())
    if not extension or not match:
        raise ConfigError(option.source, option.line, f"malformed extension line {option.value!r}")
    raw_priority = match["priority"].lower()
    if raw_priority in ("n", "next"):
        if last is None or last.extension != extension:
            raise ConfigError(option.source, option.line, "priority 'n' without a previous one")
        number = last.priority + 1
    elif raw_priority == "hint":
        number = -1
    else:
        number = int(raw_priority)
    if raw_priority == "hint":
        app, data = "hint", application.strip()
    else:
        app_match = _APPLICATION.match(application.strip())
        if not app_match:
            raise ConfigError(option.source, option.line, f"malformed application {application!r}")
        app, data = app_match["app"], app_match["data"] or ""
    return Priority(
        context, extension, number, match["label"], app, data, option.source, option.line
    )


# Asterisk's pattern sort (pbx.c, ext_cmp): each position gets a weight, a
# lower weight is more specific and is tried first; ties are broken by the
# set of characters.  Plain extensions come before every pattern.
_DIGITS = "0123456789"
_CLASSES = {"X": _DIGITS, "Z": _DIGITS[1:], "N": _DIGITS[2:]}
_WEIGHT_ONE_OR_MORE = 0x18000
_WEIGHT_ZERO_OR_MORE = 0x28000
_WEIGHT_END = 0x30000


def _pattern_elements(pattern: str) -> Iterator[str | frozenset[str]]:
    """Yield '.' / '!' markers and the set of characters each position accepts."""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        upper = char.upper()
        if upper in _CLASSES:
            yield frozenset(_CLASSES[upper])
        elif char in ".!":
            yield char
        elif char == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                yield frozenset(char)
            else:
                yield frozenset(_class_members(pattern[index + 1 : end]))
                index = end
        else:
            yield frozenset(char)
        index += 1


def _class_members(body: str) -> set[str]:
    members: set[str] = set()
    index = 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            low, high = ord(body[index]), ord(body[index + 2])
            members.update(chr(code) for code in range(min(low, high), max(low, high) + 1))
            index += 3
        else:
            members.add(body[index])
            index += 1
    return members


def _sort_key(extension: str) -> tuple[int, tuple[tuple[int, int], ...], str]:
    if not extension.startswith("_"):
        return (0, (), extension)
    weights: list[tuple[int, int]] = []
    for element in _pattern_elements(extension[1:]):
        if element == ".":
            weights.append((_WEIGHT_ONE_OR_MORE, 0))
        elif element == "!":
            weights.append((_WEIGHT_ZERO_OR_MORE, 0))
        else:
            assert isinstance(element, frozenset)
            first = min(element)
            bits = sum(1 << ord(char) for char in element if ord(char) < 256)
            weights.append(((len(element) << 8) | ord(first), bits))
    weights.append((_WEIGHT_END, 0))
    return (1, tuple(weights), extension)


def sort_extensions(extensions: Sequence[str]) -> list[str]:
    """``extensions`` in the order Asterisk tries them in a context."""
    return sorted(extensions, key=_sort_key)


def pattern_matches(extension: str, number: str) -> bool:
    """Whether dialing ``number`` matches ``extension`` (a pattern if it starts with ``_``)."""
    if not extension.startswith("_"):
        return extension == number
    elements = list(_pattern_elements(extension[1:]))

    def match(position: int, offset: int) -> bool:
        if position == len(elements):
            return offset == len(number)
        element = elements[position]
        if element == ".":
            return any(match(position + 1, end) for end in range(offset + 1, len(number) + 1))
        if element == "!":
            return any(match(position + 1, end) for end in range(offset, len(number) + 1))
        assert isinstance(element, frozenset)
        return (
            offset < len(number) and number[offset] in element and match(position + 1, offset + 1)
        )

    return match(0, 0)


def find_extension(
    contexts: Mapping[str, Context],
    context: str,
    number: str,
    *,
    _seen: frozenset[str] = frozenset(),
) -> tuple[str, str] | None:
    """The (context, extension) Asterisk would run for ``number`` dialed in ``context``.

    The context's own extensions come first, most specific first; then its
    includes, in order.  None when nothing matches (Asterisk then tries
    the ``i`` extension, if the caller was sent there by an Originate).
    """
    if context in _seen or context not in contexts:
        return None
    own = contexts[context].extensions()
    for extension in sort_extensions(list(own)):
        if pattern_matches(extension, number):
            return context, extension
    for included in contexts[context].includes:
        found = find_extension(contexts, included, number, _seen=_seen | {context})
        if found:
            return found
    return None


class ContextMatcher:
    """The extension of one context Asterisk runs for a number, for millions of numbers.

    The same answer as :func:`find_extension` gives for a context's own
    extensions (includes are not followed), from one regular expression:
    the extensions in the order Asterisk tries them, as the alternatives
    of a full match, so the first one that matches wins as in Asterisk.
    """

    def __init__(self, extensions: Iterable[str]) -> None:
        self.order = sort_extensions(list(extensions))
        alternatives = (
            f"(?P<e{index}>{_extension_regex(extension)})"
            for index, extension in enumerate(self.order)
        )
        self._regex = re.compile("|".join(alternatives))

    def __call__(self, number: str) -> str | None:
        found = self._regex.fullmatch(number)
        if found is None or found.lastgroup is None:
            return None
        return self.order[int(found.lastgroup[1:])]


def _extension_regex(extension: str) -> str:
    if not extension.startswith("_"):
        return re.escape(extension)
    parts = []
    for element in _pattern_elements(extension[1:]):
        if element == ".":
            parts.append(r"[\s\S]+")
        elif element == "!":
            parts.append(r"[\s\S]*")
        else:
            assert isinstance(element, frozenset)
            parts.append("[" + "".join(re.escape(char) for char in sorted(element)) + "]")
    return "".join(parts)


# --- application arguments and variable references ---------------------------


def split_args(data: str) -> list[str]:
    """Split application data on the commas Asterisk splits on.

    Commas inside ``${...}``, ``$[...]``, parentheses or double quotes do not
    split; backslash escapes the next character.
    """
    args: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    index = 0
    while index < len(data):
        char = data[index]
        if char == "\\" and index + 1 < len(data):
            current.append(data[index : index + 2])
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted:
            if char in "([{":
                depth += 1
            elif char in ")]}" and depth:
                depth -= 1
            elif char == "," and depth == 0:
                args.append("".join(current))
                current = []
                index += 1
                continue
        current.append(char)
        index += 1
    args.append("".join(current))
    return args


@dataclass(frozen=True, slots=True)
class VariableReference:
    """One ``${...}`` in a piece of dialplan text."""

    expression: str
    start: int
    end: int
    filtered: bool
    """True when the reference sits inside the string argument of a FILTER()."""

    @property
    def name(self) -> str:
        """The variable or function name: ``DIALER_CALLERID``, ``GLOBAL``..."""
        return re.split(r"[(:]", self.expression, maxsplit=1)[0].strip()


def _matching_brace(text: str, start: int) -> int:
    """Index of the ``}`` that closes the ``${`` at ``start``."""
    closers: list[str] = []
    index = start
    while index < len(text):
        if text.startswith("${", index) or text.startswith("$[", index):
            closers.append("}" if text[index + 1] == "{" else "]")
            index += 2
            continue
        if closers and text[index] == closers[-1]:
            closers.pop()
            if not closers:
                return index
        index += 1
    raise ValueError(f"unterminated ${{ in {text!r}")


def _top_level_comma(text: str) -> int:
    """Index of the first comma of ``text`` outside brackets, or -1."""
    depth = 0
    for index, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            return index
    return -1


_FILTER_CALL = re.compile(r"\s*FILTER\s*\(", re.I)


def variable_references(
    text: str, *, _offset: int = 0, _filtered: bool = False
) -> list[VariableReference]:
    """Every ``${...}`` in ``text``, nested ones included, outermost first.

    ``filtered`` is set on a ``FILTER()`` call itself and on whatever is
    inside its string argument (the second one).
    """
    found: list[VariableReference] = []
    index = 0
    while True:
        start = text.find("${", index)
        if start < 0:
            return found
        end = _matching_brace(text, start)
        inner = text[start + 2 : end]
        inner_offset = _offset + start + 2
        call = _FILTER_CALL.match(inner)
        found.append(
            VariableReference(
                inner, _offset + start, _offset + end + 1, _filtered or call is not None
            )
        )
        if call is None:
            found.extend(variable_references(inner, _offset=inner_offset, _filtered=_filtered))
        else:
            arguments = inner[call.end() :]
            comma = _top_level_comma(arguments)
            allowed = arguments if comma < 0 else arguments[:comma]
            base = inner_offset + call.end()
            found.extend(variable_references(allowed, _offset=base, _filtered=_filtered))
            if comma >= 0:
                found.extend(
                    variable_references(
                        arguments[comma + 1 :], _offset=base + comma + 1, _filtered=True
                    )
                )
        index = end + 1


def unfiltered_references(text: str) -> list[VariableReference]:
    """The innermost ``${...}`` references that no FILTER() encloses.

    A function call such as ``${LEN(${X})}`` is not itself a value source;
    what matters is each variable read, i.e. references with no further
    ``${`` inside them, and ``GLOBAL()``/``ARG``-style reads.
    """
    return [
        ref for ref in variable_references(text) if not ref.filtered and "${" not in ref.expression
    ]


def evaluate_filter(allowed: str, value: str) -> str:
    """What ``FILTER(allowed,value)`` returns (ranges such as ``0-9`` included)."""
    permitted: set[str] = set()
    index = 0
    while index < len(allowed):
        if index + 2 < len(allowed) and allowed[index + 1] == "-":
            low, high = ord(allowed[index]), ord(allowed[index + 2])
            permitted.update(chr(code) for code in range(low, high + 1))
            index += 3
        else:
            permitted.add(allowed[index])
            index += 1
    return "".join(char for char in value if char in permitted)
