"""mosa: safety toolkit for diffusion language models."""
