"""`midiarr eval-audio`: separation, insertion and generation quality of the audio stem models.

Separation (per stem, on clips where the stem sounds): SI-SDR of the waveform against the
rendered truth, and on mel spectrograms the log-mel MSE and the SI-SDR of mel amplitudes;
beside a supervised-NMF baseline (per-stem mel dictionaries learned from train stems,
masks from the fitted activations). Insertion and generation: Fréchet distance on mel
statistics (per clip, mean and std of each normalized log-mel band) against real stems and
real mixes, and how well the written stem's onsets line up with the real stem's (Pearson
correlation of spectral-flux envelopes), beside a stem borrowed from another clip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midiarr.audio import levels
from midiarr.audio.data import STEMS, ClipSet, load_clips
from midiarr.audio.features import MelFrontend, MelSpec, normalize
from midiarr.audio.levels import ACTIVE_DB


# ----------------------------------------------------------------- metrics
def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> float:
    """Scale-invariant SDR in dB of two 1-d signals."""
    est = estimate.double() - estimate.double().mean()
    ref = reference.double() - reference.double().mean()
    target = (est @ ref) / (ref @ ref + eps) * ref
    noise = est - target
    return float(10 * torch.log10((target @ target + eps) / (noise @ noise + eps)))


def rms_db(wave: torch.Tensor) -> float:
    """RMS level of the whole wave in dBFS."""
    return float(levels.rms_db(wave.reshape(-1)))


def mel_stats(log_mel: torch.Tensor) -> np.ndarray:
    """(N, n_mels, frames) -> (N, 2 n_mels): per band mean and std over time."""
    return torch.cat([log_mel.mean(dim=-1), log_mel.std(dim=-1)], dim=1).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows = examples, 2 or more each)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a Fréchet distance needs two or more examples on each side")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr(sqrt(A B)) from the eigenvalues of sqrt(A) B sqrt(A), which is symmetric
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def onset_envelope(log_mel: torch.Tensor) -> torch.Tensor:
    """Spectral flux per frame, (N, frames - 1)."""
    return torch.relu(log_mel[..., 1:] - log_mel[..., :-1]).sum(dim=-2)


def onset_sync(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two onset envelopes (1-d)."""
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm() + 1e-9))


# ----------------------------------------------------------------- NMF baseline
def _nmf(v: torch.Tensor, atoms: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """Dictionary W (bands, atoms) of V ~ W H under the KL divergence (multiplicative updates)."""
    w = torch.rand(v.shape[0], atoms, generator=gen, dtype=torch.float64) + 0.1
    h = torch.rand(atoms, v.shape[1], generator=gen, dtype=torch.float64) + 0.1
    for _ in range(iters):
        h *= (w.T @ (v / (w @ h + 1e-9))) / w.sum(dim=0)[:, None]
        w *= ((v / (w @ h + 1e-9)) @ h.T) / h.sum(dim=1)[None, :]
        scale = w.sum(dim=0, keepdim=True)
        w, h = w / scale, h * scale.T
    return w


class NMFBaseline:
    """Supervised NMF: a mel dictionary per stem plus one for the rest of the mix, learned on train clips."""

    def __init__(self, clips: ClipSet, front: MelFrontend, atoms: int = 24, clips_per_stem: int = 200,
                 iters: int = 150, seed: int = 0) -> None:  # fmt: skip
        gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.front = front
        dictionaries = []
        for k in range(len(STEMS) + 1):
            pool = np.flatnonzero(clips.active[:, k]) if k < len(STEMS) else np.flatnonzero(clips.other)
            pick = rng.choice(pool, size=min(clips_per_stem, len(pool)), replace=False) if len(pool) else []
            if len(pick) == 0:
                dictionaries.append(torch.rand(front.spec.n_mels, atoms, generator=gen, dtype=torch.float64) + 0.1)
                continue
            waves = torch.from_numpy(clips.waves(np.asarray(pick)))
            sig = waves[:, 1 + k] if k < len(STEMS) else waves[:, 0] - waves[:, 1:].sum(dim=1)
            v = front.mel_amplitude(sig).double().permute(1, 0, 2).reshape(front.spec.n_mels, -1)
            v = v[:, v.sum(dim=0) > 1e-3]
            dictionaries.append(_nmf(v, atoms, iters, gen))
        self.w = torch.cat(dictionaries, dim=1)
        self.atoms = atoms

    def separate_clips(self, mix: torch.Tensor, iters: int = 100) -> dict[str, Any]:
        v = self.front.mel_amplitude(mix).double()  # (B, M, T)
        h = torch.full((len(mix), self.w.shape[1], v.shape[-1]), 0.1, dtype=torch.float64)
        w = self.w
        for _ in range(iters):
            h *= (w.T @ (v / (w @ h + 1e-9))) / w.sum(dim=0)[None, :, None]
        parts = torch.stack(
            [w[:, k * self.atoms : (k + 1) * self.atoms] @ h[:, k * self.atoms : (k + 1) * self.atoms]
             for k in range(len(STEMS) + 1)], dim=1,
        ).float()  # fmt: skip
        waves = self.front.masked_sources(mix, parts)
        return {"waves": waves[:, : len(STEMS)], "mels": parts[:, : len(STEMS)]}


# ----------------------------------------------------------------- evaluation
def pick_clips(clips: ClipSet, limit: int, seed: int, min_active: int = 2) -> np.ndarray:
    """Clips with at least ``min_active`` of the stems sounding, drawn with a seed."""
    pool = np.flatnonzero(clips.active.sum(axis=1) >= min_active)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(limit, len(pool)), replace=False))


def _in_batches(fn: Callable[[torch.Tensor, int], dict[str, Any]], x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch], i // batch)["waves"] for i in range(0, len(x), batch)])


def separation_scores(est: torch.Tensor, truth: torch.Tensor, front: MelFrontend,
                      mix: torch.Tensor | None = None) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per stem, over clips where the true stem sounds: mean SI-SDR, mel MSE and mel SI-SDR and, given the
    ``mix``, the improvement of SI-SDR and mel SI-SDR over the mix itself as the stem's estimate (mean,
    median and quartiles)."""
    out: dict[str, dict[str, float]] = {}
    for k, stem in enumerate(STEMS):
        rows = [i for i in range(len(truth)) if rms_db(truth[i, k]) > ACTIVE_DB]
        if not rows:
            continue
        e, t = est[rows, k], truth[rows, k]
        le, lt = front.log_mel(e), front.log_mel(t)
        amp_e, amp_t = front.mel_amplitude(e), front.mel_amplitude(t)
        wave = np.array([si_sdr(e[i], t[i]) for i in range(len(rows))])
        mel = np.array([si_sdr(amp_e[i].flatten(), amp_t[i].flatten()) for i in range(len(rows))])
        out[stem] = {
            "clips": len(rows),
            "si_sdr": float(wave.mean()),
            "mel_mse": float((le - lt).pow(2).mean()),
            "mel_si_sdr": float(mel.mean()),
        }
        if mix is not None:
            m = mix[rows]
            amp_m = front.mel_amplitude(m)
            wave_i = wave - np.array([si_sdr(m[i], t[i]) for i in range(len(rows))])
            mel_i = mel - np.array([si_sdr(amp_m[i].flatten(), amp_t[i].flatten()) for i in range(len(rows))])
            for name, values in (("si_sdri", wave_i), ("mel_si_sdri", mel_i)):
                q1, median, q3 = np.percentile(values, [25, 50, 75])
                out[stem].update({name: float(values.mean()), f"{name}_median": float(median),
                                  f"{name}_q1": float(q1), f"{name}_q3": float(q3)})  # fmt: skip
    return out


def vocoder_scores(front: MelFrontend, vae: Any, vocoder: Any, waves: torch.Tensor, iters: int = 48,
                   seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The trained vocoder beside Griffin-Lim on true stems: each vocodes the stem's mel (true, and as the mel
    VAE gives it back, which is what the stem models write); scored against the true stem by the
    multi-resolution STFT distance, the mel L1 distance and onset sync; speed as a real-time factor."""
    from midiarr.audio.features import denormalize, fit_frames
    from midiarr.audio.vocoder import multi_resolution_stft

    length = waves.shape[-1]
    log_mel = front.log_mel(waves)
    with torch.no_grad():
        through_vae = fit_frames(vae.decode(vae.encode(front.model_frames(log_mel))), log_mel.shape[-1])
    truth_env = onset_envelope(log_mel)
    out: dict[str, Any] = {"clips": len(waves)}
    for source, mel in (("true_mel", log_mel), ("vae_mel", through_vae)):
        for name in ("neural", "neural-raw", "griffin-lim"):
            if name != "griffin-lim" and vocoder is None:
                continue
            started = time.perf_counter()
            if name != "griffin-lim":  # "raw": the network alone, without the mel corrections after it
                with torch.no_grad():
                    audio = vocoder(mel, length, corrections=0 if name == "neural-raw" else None)
            else:
                audio = front.griffin_lim(front.linear_magnitude(denormalize(mel)), length, iters, seed)
            seconds = time.perf_counter() - started
            est_mel = front.log_mel(audio)
            env = onset_envelope(est_mel)
            distances = [float(multi_resolution_stft(audio[i : i + 1], waves[i : i + 1])) for i in range(len(waves))]
            out[f"{name}/{source}"] = {
                "mrstft": float(np.mean(distances)),
                "mel_l1": float((est_mel - log_mel).abs().mean()),
                "onset_sync": float(np.mean([onset_sync(env[i], truth_env[i]) for i in range(len(waves))])),
                "x_realtime": float(len(waves) * length / front.spec.sr / max(seconds, 1e-9)),
            }
    return out


def evaluate_audio(
    data: str | Path,
    split: str = "test",
    ldm_path: str | Path | None = None,
    gmsdi_path: str | Path | None = None,
    limit: int = 48,
    steps: int = 25,
    guidance: float | None = None,
    insert_guidance: float = 2.0,
    insert_estimator: str = "mean",
    insert_level: str = "song",
    estimator: str | None = None,
    generation_eta: float | None = None,
    seed: int = 0,
    parts: tuple[str, ...] = ("separation", "insertion", "generation", "vocoder"),
    batch: int = 8,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """All numbers of the audio models on one split of a render-dataset folder."""
    from midiarr.audio.gmsdi import GMSDIPipeline
    from midiarr.audio.levels import match_level
    from midiarr.audio.pipeline import StemLDMPipeline
    from midiarr.audio.tuned import GENERATION_ETA, INSERT_LEVEL_DB, SEPARATION_ESTIMATOR, SEPARATION_GUIDANCE

    estimator = estimator or SEPARATION_ESTIMATOR
    guidance = SEPARATION_GUIDANCE[estimator] if guidance is None else guidance
    generation_eta = GENERATION_ETA if generation_eta is None else generation_eta

    ldm = StemLDMPipeline.load(ldm_path)
    gmsdi = GMSDIPipeline.load(gmsdi_path) if gmsdi_path is not None or _bundled("audio-gmsdi") else None
    spec: MelSpec = ldm.spec
    front = MelFrontend(spec)
    clips = load_clips(data, split, log=log)
    chosen = pick_clips(clips, limit, seed)
    waves = torch.from_numpy(clips.waves(chosen))[..., : spec.clip_samples]
    mix, truth = waves[:, 0], waves[:, 1:]
    report: dict[str, Any] = {"split": split, "clips": len(chosen), "steps": steps, "guidance": guidance,
                              "estimator": estimator, "insert_guidance": insert_guidance,
                              "insert_estimator": insert_estimator, "insert_level": insert_level,
                              "generation_eta": generation_eta,
                              "seed": seed, "sr": spec.sr, "clip_seconds": spec.clip_seconds}  # fmt: skip
    if "separation" in parts:
        log("separation: NMF baseline")
        nmf = NMFBaseline(load_clips(data, "train", log=log), front, seed=seed)
        sep = {
            "mix": separation_scores(mix[:, None].expand(-1, len(STEMS), -1), truth, front, mix),
            "nmf": separation_scores(_in_batches(lambda x, _: nmf.separate_clips(x), mix, batch), truth, front, mix),
        }
        # the ceiling the latent space allows: masks from the VAE's reconstruction of the true stems
        frames = front.stft(mix[:1]).shape[-1]
        b, k, n = truth.shape
        oracle = ldm.decode_mels(ldm.encode(truth.reshape(b * k, n)).reshape(b, k, *ldm.vae.latent_shape()), frames)
        sep["vae_oracle"] = separation_scores(
            front.masked_sources(mix, oracle, floor=front.mel_amplitude(mix)), truth, front, mix
        )
        report["masks"] = "decoder" if ldm.masks is not None else "mel"
        log(f"separation: stem LDM ({estimator}, {report['masks']} masks)")
        started = time.perf_counter()
        default = _in_batches(lambda x, j: ldm.separate_clips(x, steps, guidance, seed + j, estimator), mix, batch)
        report["separation_x_realtime"] = len(mix) * spec.clip_seconds / (time.perf_counter() - started)
        sep["ldm"] = separation_scores(default, truth, front, mix)
        if ldm.masks is not None:  # the same estimates through mel ratio masks, and the decoder from the mix alone
            sep["ldm_mel_masks"] = separation_scores(
                _in_batches(lambda x, j: ldm.separate_clips(x, steps, guidance, seed + j, estimator, "mel"), mix,
                            batch), truth, front, mix,
            )  # fmt: skip
            masks = ldm.masks
            sep["mask_decoder_mix_only"] = separation_scores(
                _in_batches(lambda x, _: {"waves": masks.separate(x, None)}, mix, batch), truth, front, mix
            )
        if estimator != "sample":  # the DDIM draw beside it, at its own tuned guidance
            log("separation: stem LDM (sample)")
            g = SEPARATION_GUIDANCE["sample"]
            sep["ldm_sample"] = separation_scores(
                _in_batches(lambda x, j: ldm.separate_clips(x, steps, g, seed + j, "sample"), mix, batch),
                truth, front, mix,
            )  # fmt: skip
        if gmsdi is not None:
            log("separation: GMSDI")
            sep["gmsdi"] = separation_scores(
                _in_batches(lambda x, j: gmsdi.separate_clips(x, steps, seed=seed + j), mix, batch), truth, front, mix
            )
        report["separation"] = sep
    real_stems = {k: truth[[i for i in range(len(truth)) if rms_db(truth[i, k]) > ACTIVE_DB], k]
                  for k in range(len(STEMS))}  # fmt: skip
    if "insertion" in parts:
        ins: dict[str, Any] = {}
        rng = np.random.default_rng(seed)
        for k, stem in enumerate(STEMS):
            rows = [i for i in range(len(truth)) if rms_db(truth[i, k]) > ACTIVE_DB]
            if len(rows) < 2:
                continue
            partial = mix[rows] - truth[rows, k]
            real = truth[rows, k]
            borrowed = real[np.roll(np.arange(len(rows)), 1 + int(rng.integers(0, len(rows) - 1)))]
            methods = {"ldm": lambda x, j, s=stem: ldm.insert_clips(x, [s], steps, insert_guidance, seed + j,
                                                                    estimator=insert_estimator,
                                                                    level=insert_level)}  # fmt: skip
            if gmsdi is not None:
                methods["gmsdi"] = lambda x, j, s=stem: gmsdi.insert_clips(x, [s], steps, seed=seed + j,
                                                                           level=insert_level)  # fmt: skip
            ins[stem] = {"clips": len(rows), "borrow": _insertion_scores(borrowed, real, partial, mix[rows], front)}
            for name, fn in methods.items():
                log(f"insertion: {stem} by {name}")
                outs = [fn(partial[i : i + batch], i // batch) for i in range(0, len(partial), batch)]
                written = torch.cat([o["waves"] for o in outs])[:, 0]
                ins[stem][name] = _insertion_scores(written, real, partial, mix[rows], front)
                if name == "ldm" and ldm.vocoder is not None:  # the same mels through Griffin-Lim
                    length = partial.shape[-1]
                    gl = torch.cat([ldm.vocode(o["mels"], length, "griffin-lim", seed=seed) for o in outs])[:, 0]
                    if insert_level == "song":
                        gl = match_level(gl[:, None], partial, [stem], INSERT_LEVEL_DB)[:, 0]
                    ins[stem]["ldm_griffin_lim"] = _insertion_scores(gl, real, partial, mix[rows], front)
        report["insertion"] = ins
    if "generation" in parts:
        log("generation: all stems from nothing")
        count = min(len(mix), 32)
        gen_waves = torch.cat([
            ldm.generate_clips(min(batch, count - i), list(STEMS), steps, seed + i, eta=generation_eta)["waves"]
            for i in range(0, count, batch)
        ])  # fmt: skip
        gen: dict[str, Any] = {}
        for k, stem in enumerate(STEMS):
            if len(real_stems[k]) >= 2:
                gen[stem] = {"fd": frechet_distance(mel_stats(front.log_mel(gen_waves[:, k])),
                                                    mel_stats(front.log_mel(real_stems[k])))}  # fmt: skip
        gen["mix"] = {"fd": frechet_distance(mel_stats(front.log_mel(gen_waves.sum(dim=1))),
                                             mel_stats(front.log_mel(mix)))}  # fmt: skip
        report["generation"] = gen
    if "vocoder" in parts:
        log("vocoder: the trained vocoder beside Griffin-Lim on true stems")
        pairs = [(i, k) for k in range(len(STEMS)) for i in range(len(truth)) if rms_db(truth[i, k]) > ACTIVE_DB]
        voc: dict[str, Any] = {}
        for k, stem in enumerate(STEMS):
            rows = [i for i, kk in pairs if kk == k]
            if rows:
                voc[stem] = vocoder_scores(front, ldm.vae, ldm.vocoder, truth[rows, k], seed=seed)
        voc["mix"] = vocoder_scores(front, ldm.vae, ldm.vocoder, mix, seed=seed)
        report["vocoder"] = voc
    report["reference"] = _reference_fd(data, split, clips, chosen, front, seed)
    return report


def _insertion_scores(written: torch.Tensor, real: torch.Tensor, partial: torch.Tensor, mix: torch.Tensor,
                      front: MelFrontend) -> dict[str, float]:  # fmt: skip
    lw, lr = front.log_mel(written), front.log_mel(real)
    ow, orr = onset_envelope(lw), onset_envelope(lr)
    sub = front.log_mel(partial + written)
    amp_w, amp_r = front.mel_amplitude(written), front.mel_amplitude(real)
    return {
        "fd_stem": frechet_distance(mel_stats(lw), mel_stats(lr)),
        "fd_submix": frechet_distance(mel_stats(sub), mel_stats(front.log_mel(mix))),
        "onset_sync": float(np.mean([onset_sync(ow[i], orr[i]) for i in range(len(written))])),
        "mel_si_sdr": float(np.mean([si_sdr(amp_w[i].flatten(), amp_r[i].flatten()) for i in range(len(written))])),
        "level_db": float(np.mean([rms_db(w) for w in written])),
        "real_level_db": float(np.mean([rms_db(r) for r in real])),
    }


def _reference_fd(data: str | Path, split: str, clips: ClipSet, chosen: np.ndarray, front: MelFrontend,
                  seed: int) -> dict[str, float]:  # fmt: skip
    """FD between real clips of this split and real clips of another split: the floor to read FDs against."""
    other_split = "valid" if split != "valid" else "train"
    try:
        other = load_clips(data, other_split, log=None)
    except Exception:
        return {}
    pick = pick_clips(other, len(chosen), seed + 1)
    if len(pick) < 2 or len(chosen) < 2:
        return {}
    a = torch.from_numpy(clips.waves(chosen))[..., : front.spec.clip_samples]
    b = torch.from_numpy(other.waves(pick))[..., : front.spec.clip_samples]
    out = {"against": other_split, "mix": frechet_distance(mel_stats(front.log_mel(a[:, 0])),
                                                           mel_stats(front.log_mel(b[:, 0])))}  # fmt: skip
    for k, stem in enumerate(STEMS):
        ra = [i for i in range(len(a)) if rms_db(a[i, 1 + k]) > ACTIVE_DB]
        rb = [i for i in range(len(b)) if rms_db(b[i, 1 + k]) > ACTIVE_DB]
        if len(ra) >= 2 and len(rb) >= 2:
            out[stem] = frechet_distance(mel_stats(front.log_mel(a[ra, 1 + k])), mel_stats(front.log_mel(b[rb, 1 + k])))
    return out


def _bundled(name: str) -> bool:
    from midiarr.audio.pipeline import WEIGHTS

    return (WEIGHTS / name / "model.safetensors").is_file()


__all__ = ["NMFBaseline", "evaluate_audio", "frechet_distance", "normalize", "si_sdr"]
