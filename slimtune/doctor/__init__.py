"""bn_doctor: name the BatchNorm and Dropout pitfalls behind "eval accuracy collapsed".

``diagnose(DoctorConfig(...))`` examines whatever it is given (a train dir, checkpoint,
MetaGraph, frozen graph, SavedModel, Keras model) and returns a :class:`Report` of
findings, each with its evidence, meaning and fix.  One module per kind of input:
``checkpoint_checks``, ``graph_checks``, ``keras_checks``; ``data_checks`` and
``statistics_checks`` run models on data.  ``check_train_step(model, step, *batch)``
checks a custom Keras training step from the user's own code.
"""

from slimtune.doctor.diagnose import (  # noqa: F401
    DoctorConfig, UnusableInput, checkpoint_report, diagnose)
from slimtune.doctor.findings import ERROR, NOTE, WARNING, Finding, Report  # noqa: F401
from slimtune.doctor.keras_checks import check_train_step  # noqa: F401
