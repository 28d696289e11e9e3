"""Subject folders and cohorts: readers, preprocessing per modality, tasks, the demo cohort.

Public API
----------
- :class:`PreprocessConfig` - the single source of preprocessing truth (stored in bundles).
- :func:`load_subject` -> :class:`Subject`; :func:`parse_genetics_text` for pasted genetics.
- :func:`load_cohort` -> :class:`Cohort` (``task_subjects``, ``load_subjects``); :class:`Task`.
- Readers: :func:`read_smri` (+ :class:`SmriGeometry`, :func:`cube_to_native`),
  :func:`read_fmri`, :func:`read_clinical`, :func:`render_clinical_note`,
  :func:`read_genetics`, :func:`expand_apoe_genotype`.
- :func:`make_demo_cohort` - synthetic cohort on the shipped real templates;
  :func:`make_clinica_demo_cohort` - the same subjects as 2-3 visits per person, Clinica layout.
- :func:`read_label_table` (ClinicaDL-style labels per session); :func:`read_visit_table` and
  :func:`derive_labels` (NC / MCI / AD and sMCI / pMCI from an ADNIMERGE-shaped visit table).
"""
from .clinical import read_clinical, read_clinical_json, read_note, render_clinical_note
from .cohort import Cohort, default_cache_dir, load_cohort
from .config import PreprocessConfig
from .demo import DemoCohortInfo, make_demo_cohort
from .demo_clinica import ClinicaDemoInfo, make_clinica_demo_cohort
from .fmri import prepare_roi_series, read_bold, read_fmri, read_roi_table
from .label_table import read_label_table
from .genetics import (
    apoe_alleles_of,
    expand_apoe_genotype,
    parse_apoe_genotype,
    parse_genetics_text,
    read_apoe,
    read_fasta,
    read_genetics,
    read_vcf,
)
from .smri import SmriGeometry, cube_to_native, load_t1, preprocess_t1, read_smri
from .subject import Subject, SubjectFiles, find_subject_files, load_subject
from .task import Task, canonical_label, label_is_a
from .visit_labels import derive_labels, read_visit_table, write_label_table

__all__ = [
    "PreprocessConfig",
    "Subject",
    "SubjectFiles",
    "load_subject",
    "find_subject_files",
    "Cohort",
    "load_cohort",
    "default_cache_dir",
    "Task",
    "canonical_label",
    "label_is_a",
    "SmriGeometry",
    "load_t1",
    "preprocess_t1",
    "read_smri",
    "cube_to_native",
    "read_fmri",
    "read_bold",
    "read_roi_table",
    "prepare_roi_series",
    "read_clinical",
    "read_clinical_json",
    "read_note",
    "render_clinical_note",
    "read_genetics",
    "read_apoe",
    "read_fasta",
    "read_vcf",
    "parse_apoe_genotype",
    "expand_apoe_genotype",
    "apoe_alleles_of",
    "parse_genetics_text",
    "make_demo_cohort",
    "DemoCohortInfo",
    "make_clinica_demo_cohort",
    "ClinicaDemoInfo",
    "read_label_table",
    "read_visit_table",
    "derive_labels",
    "write_label_table",
]
