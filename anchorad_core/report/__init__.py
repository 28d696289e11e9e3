"""The PDF report of one subject (matplotlib ``PdfPages``).

Pages:

1. subject, inputs used and missing (with the missing-modality rule), the diagnosis: a table per
   anchor round (p per label, aggregation weight), a bar chart, the aggregation rule;
2. … for each anchor round: the Q-former attention of each auxiliary block and of the
   cross-modal block, then the Integrated-Gradients maps of each modality — orthogonal T1
   slices with the map over the anatomy, ROI maps painted into the atlas with the top-10 ROIs,
   the note with highlighted words, a genetics track with the APOE SNPs marked, and the
   query x token attention matrix. Every attention panel states its normalised entropy and
   max / uniform ratio and is coloured as weight / uniform (1 = uniform); a near-uniform one
   says so and lists no top ROIs / 6-mers. Every round states its IG convergence delta, the
   steps used and whether the 5 % bound was met (a plain warning when not);
last. the bundle's provenance (what is real, what is synthetic) and the methods.

Every page carries the research-use-only statement. The file is written to a temporary name
and renamed; an existing file is never replaced unless ``force=True``.

Modules: :mod:`.layout` plans the pages (plain data, no matplotlib), :mod:`.pages` draws the
summary, round and provenance pages, :mod:`.panels` one module per kind of map, :mod:`.writer`
writes the PDF.
"""
from .text import RESEARCH_USE_ONLY
from .writer import ReportExistsError, write_report

__all__ = ["write_report", "ReportExistsError", "RESEARCH_USE_ONLY"]
