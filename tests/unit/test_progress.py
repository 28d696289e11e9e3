"""Progress in logs: one line per stage."""
import io

from anchorad_core.progress import LogSink


def test_log_progress_prints_a_line_per_stage_not_per_update():
    stream = io.StringIO()
    sink = LogSink(stream)
    for done in range(0, 101):
        sink("phase 2 · anchor sMRI", done, 100)
    sink("phase 2 · anchor sMRI", 100, 100)  # a repeated final update
    sink("features", 3, 3)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0] == "phase 2 · anchor sMRI: started (100 steps)"
    assert lines[1].startswith("phase 2 · anchor sMRI: done in ") and lines[2].startswith("features: done in ")
