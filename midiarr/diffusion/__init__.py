"""The piano-roll diffusion engine: one multi-track model for total and partial generation and separation."""
