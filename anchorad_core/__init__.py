"""AnchorAD core library: data, backbones, the anchored method, training, inference, explanation and report. Qt-free."""

__version__ = "0.1.0"
