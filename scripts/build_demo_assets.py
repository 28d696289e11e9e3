"""Rebuild the demo assets shipped in resources/demo/: a trained demo bundle and one subject.

Run after any change to the demo backbones' architectures or the bundle format:

    python scripts/build_demo_assets.py [--from-demo anchorad-demo]

It runs ``anchorad demo`` (or re-uses the output folder of one) and copies its bundle and one
held-out subject that has all four modalities into ``resources/demo/``. The subject is
SYNTHETIC (demo cohort on real templates); the bundle was trained on synthetic subjects.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from anchorad_core.progress import Progress, TqdmSink
from anchorad_core.workflows import run_demo

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "resources" / "demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-demo", help="re-use the output folder of an earlier `anchorad demo`")
    parser.add_argument("--work", default="anchorad-demo")
    args = parser.parse_args()
    demo = Path(args.from_demo) if args.from_demo else run_demo(args.work, progress=Progress(TqdmSink())).root
    results = json.loads((demo / "results" / "results.json").read_text())
    test_ids = results.get("split", {}).get("test_ids") or []
    candidates = [demo / "cohort" / s for s in test_ids] or sorted((demo / "cohort").glob("sub-*"))
    subject = next(p for p in candidates
                   if all((p / d).is_dir() for d in ("anat", "func", "clinical", "genetics")))
    if TARGET.exists():
        shutil.rmtree(TARGET)
    TARGET.mkdir(parents=True)
    shutil.copytree(demo / "bundle", TARGET / "bundle")
    shutil.copytree(subject, TARGET / subject.name)
    (TARGET / "README.md").write_text(
        "# Demo assets (SYNTHETIC)\n\n"
        f"- `bundle/`: AnchorAD model trained by `anchorad demo` on the synthetic demo cohort. Its sMRI / "
        "fMRI / DNA backbones are the small pretrained ones of `resources/pretrained/` (self-supervised on an "
        "unlabeled synthetic cohort), its text backbone the real pretrained all-MiniLM-L6-v2; all four are "
        "frozen in phase 1 (linear probes), so the bundle references them by hash instead of copying them, "
        "and holds the heads, the LoRA adapters, the Q-formers and the aggregation.\n"
        f"- `{subject.name}/`: one held-out SYNTHETIC subject of that cohort (built on real templates; "
        "see resources/templates/README.md). Not a patient.\n\n"
        "Rebuild with `python scripts/build_demo_assets.py`. Research use only.\n",
        encoding="utf-8",
    )
    print(f"demo assets written to {TARGET} (subject {subject.name})")


if __name__ == "__main__":
    main()
