"""Write the report's pages into one PDF, atomically, never replacing a file unless asked to."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import AnchorADError
from .bundle_info import BundleInfo
from .pages import report_figures
from .style import report_style

if TYPE_CHECKING:
    from ..bundle import Bundle
    from ..data.subject import Subject
    from ..explain.subject import SubjectExplanation
    from ..inference import Diagnosis


class ReportExistsError(AnchorADError):
    """The report file exists and ``force`` was not given."""


def check_writable(out_path: "str | Path", force: bool = False) -> Path:
    """``out_path`` as a Path; raises :class:`ReportExistsError` if it exists and ``force`` is false."""
    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise ReportExistsError("already exists (use --force to replace it)", out_path)
    return out_path


def write_report(
    diagnosis: "Diagnosis",
    explanation: "SubjectExplanation | None",
    subject: "Subject",
    out_path: "str | Path",
    bundle: "Bundle | Mapping[str, Any] | None" = None,
    force: bool = False,
) -> Path:
    """Write the PDF report of one subject.

    Parameters
    ----------
    diagnosis : Diagnosis
    explanation : SubjectExplanation or None
        From :func:`anchorad_core.explain.explain_subject`; ``None`` gives the diagnosis and
        provenance pages only.
    subject : Subject
        The subject the diagnosis was made on (T1 for the overlays).
    out_path : str or Path
        ``*.pdf`` file to write.
    bundle : Bundle or mapping, optional
        The bundle (or its manifest); default: what ``diagnosis.bundle`` records.
    force : bool
        Replace an existing file.

    Returns
    -------
    Path

    Raises
    ------
    ReportExistsError
        If ``out_path`` exists and ``force`` is false.
    """
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from ..data.fileio import atomic_path

    out_path = check_writable(out_path, force)
    info = BundleInfo.of(diagnosis, bundle)
    metadata = {
        "Title": f"AnchorAD report {diagnosis.subject_id}",
        "Subject": "Research use only; not for clinical diagnosis",
        "Creator": "AnchorAD",
    }
    with report_style(), atomic_path(out_path) as tmp, PdfPages(str(tmp), metadata=metadata) as pdf:
        for fig in report_figures(diagnosis, explanation, subject, info):
            pdf.savefig(fig)
            plt.close(fig)
    return out_path
