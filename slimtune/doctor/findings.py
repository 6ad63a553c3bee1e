"""What the doctor reports: findings with a severity, evidence, meaning and fix.

A finding is written for the person who will read it at 2 a.m.: *what* was seen (the
layer names and numbers), *what it means* for their model, and *what to do*, in one or
two sentences each.  Errors are bugs that make served predictions wrong; warnings are
settings that usually cost accuracy; notes are facts worth knowing.
"""

import dataclasses
from typing import List

ERROR, WARNING, NOTE = "error", "warning", "note"
_ORDER = {ERROR: 0, WARNING: 1, NOTE: 2}


@dataclasses.dataclass
class Finding:
    severity: str  # error | warning | note
    code: str  # stable identifier, e.g. "bn-updates-not-run"
    title: str
    evidence: str
    meaning: str
    fix: str
    source: str = ""  # which input it came from (a path)

    def lines(self):
        out = [f"{self.severity.upper()} [{self.code}] {self.title}"]
        if self.source:
            out.append(f"  in:      {self.source}")
        out += [f"  seen:    {self.evidence}", f"  means:   {self.meaning}",
                f"  fix:     {self.fix}"]
        return out


@dataclasses.dataclass
class Report:
    findings: List[Finding] = dataclasses.field(default_factory=list)
    checked: List[str] = dataclasses.field(default_factory=list)  # what was examined

    def add(self, findings, source=""):
        for finding in findings:
            finding.source = finding.source or source
            self.findings.append(finding)

    @property
    def errors(self):
        return [f for f in self.findings if f.severity == ERROR]

    def sorted(self):
        return sorted(self.findings, key=lambda f: _ORDER[f.severity])

    def lines(self):
        out = [f"checked: {item}" for item in self.checked]
        if not self.findings:
            return out + ["", "no findings: nothing wrong seen in what was checked"]
        for finding in self.sorted():
            out += [""] + finding.lines()
        counts = {s: sum(f.severity == s for f in self.findings) for s in _ORDER}
        out += ["", f"{counts[ERROR]} errors, {counts[WARNING]} warnings, {counts[NOTE]} notes"]
        return out

    def as_dict(self):
        return {"checked": self.checked,
                "findings": [dataclasses.asdict(f) for f in self.sorted()],
                "errors": len(self.errors)}


def listed(names, limit=3):
    """``a, b, c and 7 more``: evidence stays one line however many layers are affected."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
