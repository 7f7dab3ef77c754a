"""Sampling defaults of the audio stem models, chosen on the valid split (docs/audio.md, "Tuning").

Kept apart from the commands so that the Python API, the CLI and `eval-audio` read the same numbers.
"""

from __future__ import annotations

# separation with the stem LDM: which estimator, and its classifier-free guidance on the mix
SEPARATION_ESTIMATOR = "mean"
SEPARATION_GUIDANCE = {"mean": 1.0, "sample": 4.0}
# insertion (audio-domain Subtractive Training): a DDIM draw, guidance not tuned
INSERT_GUIDANCE = 2.0
