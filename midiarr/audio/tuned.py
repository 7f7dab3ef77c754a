"""Sampling defaults of the audio stem models, chosen on the valid split (docs/audio.md, "Tuning").

Kept apart from the commands so that the Python API, the CLI and `eval-audio` read the same numbers.
"""

from __future__ import annotations

# separation with the stem LDM: which estimator, and its classifier-free guidance on the mix
SEPARATION_ESTIMATOR = "mean"
SEPARATION_GUIDANCE = {"mean": 1.5, "sample": 4.0}
# insertion (audio-domain Subtractive Training): the posterior mean (one call). Set to the song's level it beat a
# DDIM draw on valid on onset sync, the sub-mix's Fréchet distance and mel SI-SDR for every stem (docs/audio.md);
# at the model's own level it had been 3-10 dB off. Guidance not tuned
INSERT_GUIDANCE = 2.0
INSERT_ESTIMATOR = "mean"
# an inserted stem's level: "song", set clip by clip to the rest of the song's level plus the stem's median offset
# on the train split's clips (`python -m midiarr.audio.levels runs/audio/data`), or "model", as the model wrote it
INSERT_LEVELS = ("song", "model")
INSERT_LEVEL = "song"
INSERT_LEVEL_DB = {"bass": -6.3, "drums": -12.4, "guitar": -5.6, "piano": -10.3}
# total generation from nothing: DDIM's eta (0 deterministic, 1 ancestral). With nothing given, the deterministic
# path drifted towards near-silent bass and drums for the continued model (docs/audio.md)
GENERATION_ETA = 1.0
# how separation turns stem mels into masks: "decoder", the mask decoder trained on this LDM's estimates (masks
# at the STFT's resolution), or "mel", ratio masks of the mels spread over linear bins (no further weights)
MASKS = ("decoder", "mel")
# how generated and inserted stems become audio: "neural", the vocoder trained here, or "griffin-lim"
VOCODERS = ("neural", "griffin-lim")
