"""Explanations: Q-former cross-attention and Captum attributions mapped back to the inputs."""
