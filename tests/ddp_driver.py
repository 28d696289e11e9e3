"""Train the toy model phase 1 + 2, distributed when launched with several processes."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import toy_backbone  # noqa: E402,F401
from safetensors.torch import save_file  # noqa: E402

from anchorad_core.training.evaluate import split_train_val  # noqa: E402
from anchorad_core.training.trainer import train_anchorad  # noqa: E402
from anchorad_core.workflows import distributed_accelerator  # noqa: E402


def main(out: str) -> None:
    accelerator = distributed_accelerator("cpu")
    inputs = toy_backbone.toy_inputs(24, drop={"genetics": [4]})
    train, val = split_train_val(inputs, 0.25, seed=0)
    config = toy_backbone.toy_config()
    # cross-fitting's fold fits run unsharded in every process; this test is about DDP phase 1/2
    config.cross_fit_folds = 0
    for stage in (*config.phase1.values(), *config.phase2.values()):
        stage.epochs, stage.patience, stage.batch_size = 3, 3, 8
    result = train_anchorad(config, ["NC", "AD"], train, val, accelerator=accelerator)
    if accelerator is None or accelerator.is_main_process:
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, out)


if __name__ == "__main__":
    main(sys.argv[1])
