"""Typer options generated from settings dataclasses, so a setting's default and help are written once.

A settings dataclass documents each field with the string literal under it (an attribute
docstring); :class:`ConfigOptions` turns the fields into ``Annotated[type, typer.Option(...)]``
parameters whose defaults are the fields' defaults and whose help is those docstrings, and
:func:`config_command` splices them into a Typer command in place of one parameter per group::

    TRAIN = ConfigOptions(TrainConfig, exclude=("batch_size",), flags={"updates": Flag("--budget", min=1)})

    @config_command(train=TRAIN)
    def train(name: Annotated[str, typer.Argument()], train: Settings) -> None:
        config = TrainConfig(**train)   # the fields' values, as given or defaulted

A :class:`Flag` renames an option, bounds it, or gives it another type than its field (``parse``
maps the option's value to the field's, ``show`` the field's default to the option's).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

Settings = dict[str, Any]
"""What a command gets for one group: field name -> value (from the command line, or the default)."""


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one field appears on the command line; every part is optional."""

    name: str | None = None
    """The option, e.g. ``"--budget"`` (default: ``--`` and the field's name with dashes)."""
    help: str | None = None
    """Help text (default: the field's attribute docstring)."""
    type: Any = None
    """The option's type when it is not the field's (then ``parse`` usually converts)."""
    parse: Callable[[Any], Any] | None = None
    """Option value -> field value (a ValueError is reported as a bad value of the option)."""
    show: Callable[[Any], Any] | None = None
    """Field default -> the option's default."""
    min: float | None = None
    max: float | None = None
    unset: bool = False
    """The option defaults to "not given" (None, or False for a switch) and its field is then left out
    of the command's settings (so the dataclass's own default applies); help still shows that default."""
    switch: bool = False
    """A boolean field as a lone flag (``--raw-states``, no ``--no-...`` form) that sets the field to
    the opposite of its default; implies ``unset``."""


def fail(message: str) -> NoReturn:
    """Print ``error: message`` and exit with status 2 (Typer's status for a bad command line)."""
    Console().print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass: the string literal under each field, by field name
    (the class's bases first, so a subclass's docstring wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source (e.g. a frozen app): no help texts
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"field {field.name!r} has no default: a command-line option needs one")


class ConfigOptions:
    """Command-line options for the fields of one settings dataclass.

    ``include``: the fields to offer, in this order (default: every field, in the class's order);
    ``exclude``: fields not to offer; ``flags``: a :class:`Flag` per field that needs one;
    ``help_prefix``: put before every help text (e.g. "IQL variants: ").
    """

    def __init__(self, cls: type, *, include: Iterable[str] | None = None, exclude: Iterable[str] = (),
                 flags: Mapping[str, Flag] | None = None, help_prefix: str = "") -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        self.cls, self.help_prefix = cls, help_prefix
        fields = {f.name: f for f in dataclasses.fields(cls)}
        names = list(include) if include is not None else list(fields)
        excluded = set(exclude)
        self.flags = dict(flags or {})
        unknown = (set(names) | excluded | set(self.flags)) - set(fields)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field {sorted(unknown)}")
        self.fields = [fields[name] for name in names if name not in excluded]
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        self._types = {f.name: hints[f.name] for f in self.fields}
        self._defaults = {f.name: _default(f) for f in self.fields}
        self._docs = {f.name: docs.get(f.name, "") for f in self.fields}

    def flag(self, name: str) -> Flag:
        return self.flags.get(name, Flag())

    def option_name(self, name: str) -> str:
        """The option that sets field ``name``, e.g. ``--budget`` for ``updates``."""
        return self.flag(name).name or "--" + name.replace("_", "-")

    def default(self, name: str) -> Any:
        """The dataclass's default of field ``name``."""
        return self._defaults[name]

    def help(self, name: str) -> str:
        """The option's help: the Flag's, else the field's docstring in one paragraph, where a
        ``field`` in double back-quotes that is offered here reads as its option (``--field``)."""
        text = self.help_prefix + (self.flag(name).help or self._docs[name])
        options = {f.name: self.option_name(f.name) for f in self.fields}
        text = re.sub(r"``([^`]+)``", lambda m: options.get(m.group(1), m.group(1)), text)
        return escape(" ".join(text.split()))

    def parameters(self) -> list[inspect.Parameter]:
        """One keyword parameter per offered field, annotated for Typer."""
        params = []
        for field in self.fields:
            flag, name = self.flag(field.name), field.name
            default = self._defaults[name]
            kind = flag.type or self._types[name]
            extra: dict[str, Any] = {}
            if flag.switch:
                if kind is not bool:
                    raise TypeError(f"{name}: a switch needs a bool field")
                option, decls, extra["show_default"] = False, (self.option_name(name),), False
            elif flag.unset:
                kind, option, decls = kind | None, None, (self.option_name(name),)
                shown = flag.show(default) if flag.show else default
                extra["show_default"] = False if shown is None else str(shown)
            else:
                option = flag.show(default) if flag.show else default
                decls = (self.option_name(name),)
                if kind is bool:  # --name/--no-name
                    stem = self.option_name(name).removeprefix("--")
                    decls = (f"--{stem}/--no-{stem}",)
            if flag.min is not None:
                extra["min"] = flag.min
            if flag.max is not None:
                extra["max"] = flag.max
            annotation = Annotated[kind, typer.Option(*decls, help=self.help(name), **extra)]
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                            annotation=annotation))
        return params

    def settings(self, values: Mapping[str, Any]) -> Settings:
        """The fields' values from the options' (``values``, by field name): parsed, and without the
        ``unset`` options that were not given. A ValueError names the option."""
        out: Settings = {}
        for field in self.fields:
            flag, value = self.flag(field.name), values[field.name]
            if flag.switch:
                if value:
                    out[field.name] = not self._defaults[field.name]
                continue
            if flag.unset and value is None:
                continue
            if flag.parse is not None:
                try:
                    value = flag.parse(value)
                except ValueError as exc:
                    raise ValueError(f"{self.option_name(field.name)}: {exc}") from exc
            out[field.name] = value
        return out


def config_command(fail: Callable[[str], Any] | None = None, **groups: ConfigOptions) -> Callable:
    """Decorate a Typer command: its parameter named like each group is replaced by that group's
    options, and receives their :meth:`ConfigOptions.settings`. ``fail(message)`` reports a value
    that does not parse (default: Typer's bad-parameter error)."""

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func, eval_str=True)
        missing = set(groups) - set(signature.parameters)
        if missing:
            raise TypeError(f"{func.__name__} has no parameter {sorted(missing)} for its option groups")
        params: list[inspect.Parameter] = []
        owner: dict[str, str] = {}
        for param in signature.parameters.values():
            new = groups[param.name].parameters() if param.name in groups else [param]
            for p in new:
                if p.name in owner:
                    raise TypeError(f"{func.__name__}: two parameters are called {p.name!r}")
                owner[p.name] = param.name
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(func)
        def command(**values: Any) -> Any:
            kwargs = {name: value for name, value in values.items() if owner[name] not in groups}
            for group, options in groups.items():
                try:
                    kwargs[group] = options.settings({n: v for n, v in values.items() if owner[n] == group})
                except ValueError as exc:
                    if fail is None:
                        raise typer.BadParameter(str(exc)) from exc
                    fail(str(exc))
            return func(**kwargs)

        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
