"""The findings protocol shared by the doctor (a run), the pre-run checks (a recipe) and the audit (the data).

A finding kind is one class, registered where it is defined with `@finding_kind`:

    @finding_kind
    class DeadUnits(Kind):
        scope = "run"
        code = "dead_units"
        thresholds = (DEAD_WARNING, ...)
        def run(self, run: RunRecord) -> Finding | None: ...

`scope` says what `run` reads: "run" (a RunRecord, for `kaizen doctor`), "recipe" (a RecipeContext, for
`kaizen check`) or "data" (an audit's AuditContext; it returns per-example Issues). `kinds(scope)` lists them
in registration order, which is the order they run in and, within a severity, the order they are shown in
(causes before symptoms). Each threshold is a `Threshold`: a number that carries its name and the
measurement that justifies it (a benchmark), so a report can say where every cut-off comes from. A finding's
fixes are `dotted.key=value` overrides, each with the reason it is proposed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

SEVERITIES = ("critical", "warning", "info")
SCOPES = ("run", "recipe", "data")


class Threshold(float):
    """A cut-off: a float that also carries its `name` and its `source` (the measurement that justifies it)."""

    name: str
    source: str

    def __new__(cls, name: str, value: float, source: str) -> Threshold:
        threshold = super().__new__(cls, value)
        threshold.name = name
        threshold.source = source
        return threshold

    def describe(self) -> dict[str, Any]:
        """{name, value, source}: plain data for reports."""
        return {"name": self.name, "value": float(self), "source": self.source}


@dataclass(frozen=True)
class Fix:
    """One config override to try, and why it is proposed for this run."""

    override: str
    reason: str = ""


@dataclass
class Finding:
    """One diagnosed problem (or, at severity info, a note about the diagnosis itself, or a passed check).

    `evidence` is one line of numbers, layers and epochs for people; `details` holds the same numbers for
    programs. `recommendations` are `dotted.key=value` overrides valid for `Config.override`, best first;
    each one is a change to the run's config, to try on its own (`kaizen doctor RUN --verify`); `reasons`
    maps an override to why it is proposed (`fixes` pairs them). `suspects` names the config keys this
    run turned away from their usual values that could cause the problem, most likely first.
    """

    severity: str  # info | warning | critical
    code: str
    title: str
    evidence: str
    explanation: str
    recommendations: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    suspects: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    @property
    def rank(self) -> int:
        """0 for critical, 1 for warning, 2 for info: the order findings are shown in."""
        return SEVERITIES.index(self.severity)

    @property
    def is_problem(self) -> bool:
        """Whether this is a warning or critical finding (a failed check), not a note."""
        return self.severity != "info"

    @property
    def fixes(self) -> list[Fix]:
        """The recommendations, best first, each with its reason."""
        return [Fix(override, self.reasons.get(override, "")) for override in self.recommendations]

    def to_dict(self) -> dict[str, Any]:
        """The finding as plain data (JSON ready)."""
        return asdict(self)


class Kind:
    """One kind of finding: what it reads (`scope`), its `code`, its thresholds, and `run`.

    `explains_fit`: a problem of this kind explains why a model does not fit its training data, so a
    finding that only says it does not fit (`fit_symptom`) is dropped when one is present.
    """

    scope: ClassVar[str]
    code: ClassVar[str]
    title: ClassVar[str] = ""  # for reports that list kinds (the audit's sections)
    caption: ClassVar[str] = ""  # what a report shows of each finding of the kind
    thresholds: ClassVar[tuple[Threshold, ...]] = ()
    explains_fit: ClassVar[bool] = False
    fit_symptom: ClassVar[bool] = False

    def run(self, context: Any) -> Any:
        """The finding(s) of this kind in `context` (None or [] when there is none)."""
        raise NotImplementedError


_KINDS: dict[str, dict[str, type[Kind]]] = {scope: {} for scope in SCOPES}


def finding_kind(cls: type[Kind]) -> type[Kind]:
    """Class decorator: register a finding kind under its scope and code (each code once per scope)."""
    if cls.scope not in SCOPES:
        raise TypeError(f"{cls.__name__}: scope must be one of {SCOPES}, not {cls.scope!r}")
    table = _KINDS[cls.scope]
    if cls.code in table and table[cls.code] is not cls:
        raise TypeError(f"{cls.__name__}: finding code {cls.code!r} is already {table[cls.code].__name__}")
    table[cls.code] = cls
    return cls


def kinds(scope: str) -> tuple[type[Kind], ...]:
    """The registered kinds of `scope`, in registration order (a tuple: the table is not for changing)."""
    return tuple(_KINDS[scope].values())


def kind_table(scope: str) -> MappingProxyType[str, type[Kind]]:
    """{code: kind} of `scope`, read-only."""
    return MappingProxyType(_KINDS[scope])


def thresholds(scope: str) -> list[dict[str, Any]]:
    """Every threshold of the kinds of `scope`, with its source: [{kind, name, value, source}]."""
    return [
        {"kind": kind.code, **threshold.describe()} for kind in kinds(scope) for threshold in kind.thresholds
    ]
