"""Explanations: Q-former cross-attention and Captum attributions mapped back to the inputs.

Entry point: :func:`explain_subject` (diagnosis + every anchor round's attention and Integrated
Gradients) -> :class:`SubjectExplanation` (``.save(outdir)`` writes NIfTI / TSV / JSON maps);
:func:`anchorad_core.report.write_report` turns it into the PDF report.
"""
from .subject import MISSING_RULE, RoundExplanation, SubjectExplanation, explain_subject

__all__ = ["MISSING_RULE", "RoundExplanation", "SubjectExplanation", "explain_subject"]
