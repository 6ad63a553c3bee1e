"""What slimtune-train reports of the doctor's checks on its own run: the training
graph's BatchNorm sizes before the first step, and the final checkpoint (or a
Keras-engine run's model.keras) after the last; errors and warnings only, printed as the
doctor prints them.  A diagnosis never fails a finished run."""

from slimtune import metadata, sources
from slimtune.checks import checkpoint_checks, graph_checks, keras_checks, precision_checks
from slimtune.findings import NOTE, Report


def report_before_training(trainer, log):
    """Before the first step, print the doctor's findings about the training graph's
    BatchNorm layers (one value per channel, or so few that training can explode); a
    Keras-engine run has no graph to read."""
    if getattr(trainer, "graph", None) is None:
        return set()
    findings = graph_checks.batch_norm_size_findings(trainer.graph)
    for finding in findings:
        for line in finding.lines():
            log(line)
    return {finding.code for finding in findings}


def report_after_training(run, train_dir, final, log, already=()):
    """Print the BatchNorm doctor's findings on the final checkpoint (a Keras-engine run:
    on its model.keras), errors and warnings only, not the ``already`` reported codes."""
    try:
        if run.engine == metadata.KERAS_ENGINE:
            report = Report()
            report.add(keras_checks.check(sources.load_keras(final),
                                          metadata.recorded(train_dir)), final)
        else:
            report = checkpoint_checks.checkpoint_report(final)
        report.add(precision_checks.loss_scale_findings(train_dir), train_dir)
    except Exception as e:  # a diagnosis must never fail a finished run
        log(f"slimtune-doctor could not check {final}: {str(e).splitlines()[0]}")
        return
    findings = [f for f in report.sorted()
                if f.severity != NOTE and f.code not in already]
    if findings:
        log("slimtune-doctor on the final checkpoint:")
        for finding in findings:
            for line in finding.lines():
                log(line)
