"""Train the toy model in a run folder and save its final weights (driven by test_resume.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import toy_backbone  # noqa: E402,F401
from safetensors.torch import save_file  # noqa: E402

from anchorad_core.training.evaluate import split_train_val  # noqa: E402
from anchorad_core.training.run_state import RunState  # noqa: E402
from anchorad_core.training.trainer import train_anchorad  # noqa: E402


def main(run_dir: str, out: str, resume: bool) -> None:
    inputs = toy_backbone.toy_inputs(24, drop={"fmri": [3]})
    train, val = split_train_val(inputs, 0.25, seed=0)
    config = toy_backbone.toy_config()
    for stage in (*config.phase1.values(), *config.phase2.values()):
        stage.epochs, stage.patience = 4, 4
    run = RunState(run_dir, {"config": config.to_dict()}, resume=resume)
    result = train_anchorad(config, ["NC", "AD"], train, val, run=run)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "resume")
