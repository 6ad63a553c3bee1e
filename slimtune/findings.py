"""Findings: what a check saw in a model, in words, with what it means and the fix.

One vocabulary for every command that names causes.  slimtune-doctor prints each finding
as a block (severity, code and title; seen, means, fix), slimtune-verify as one line
under a short upper-case label, slimtune-train the doctor's blocks before its first step
and after its last.

A finding is written for the person who will read it at 2 a.m.: *what* was seen (the
layer names and numbers), *what it means* for their model, and *what to do*, in one or
two sentences each.  Errors are bugs that make served predictions wrong (verify fails
on them); warnings are settings that usually cost accuracy; notes are facts worth
knowing.
"""

import dataclasses
from typing import List

ERROR, WARNING, NOTE = "error", "warning", "note"
_ORDER = {ERROR: 0, WARNING: 1, NOTE: 2}
_FIELDS = ("severity", "code", "title", "evidence", "meaning", "fix", "source")


@dataclasses.dataclass
class Finding:
    severity: str  # error | warning | note
    code: str  # stable identifier, e.g. "bn-updates-not-run"
    title: str
    evidence: str
    meaning: str
    fix: str
    source: str = ""  # which input it came from (a path)
    label: str = ""  # short, upper case: the first column of a one-line report

    @property
    def fatal(self):
        """An error: a comparison that shows it fails."""
        return self.severity == ERROR

    @property
    def text(self):
        """The finding in one sentence: seen, means, fix."""
        return f"{self.evidence}: {self.meaning}; {self.fix}"

    def lines(self):
        """The doctor's block."""
        out = [f"{self.severity.upper()} [{self.code}] {self.title}"]
        if self.source:
            out.append(f"  in:      {self.source}")
        out += [f"  seen:    {self.evidence}", f"  means:   {self.meaning}",
                f"  fix:     {self.fix}"]
        return out

    def line(self):
        """One line under the label (slimtune-verify)."""
        return f"{self.label or self.code.upper():<20} {self.text}"

    def as_dict(self):
        return {field: getattr(self, field) for field in _FIELDS}

    def as_line_dict(self):
        return {"label": self.label or self.code.upper(), "text": self.text,
                "fatal": self.fatal}


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
                "findings": [f.as_dict() for f in self.sorted()],
                "errors": len(self.errors)}


def listed(names, limit=3):
    """``a, b, c and 7 more``: evidence stays one line however many layers are affected."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
