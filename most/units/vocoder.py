"""Training-free vocoder: log-mel frames -> waveform by mel inversion + fast Griffin-Lim.

Why this shape: the embedded default must decode units without any trained network. The mel
filterbank is inverted to a linear magnitude with a few non-negative least-squares steps, frames
are upsampled in time so Griffin-Lim always runs at a 100 Hz hop with ~3x window overlap (fewer
phase artefacts than at a 50 Hz analysis hop), and phase is recovered with the momentum variant
of Griffin-Lim (Perraudin et al. 2013): 24 iterations reach a spectral convergence of 0.127
(0.119 at 32) at 1.3x the speed of 32. The STFT pair is written out (:meth:`GriffinLim._stft`,
:meth:`GriffinLim._istft`: torch.stft / torch.istft's results, frame-major, the window envelope
computed once per call) and the spectra stay on their real views: ~70x real time on one core.
Everything is batched and deterministic.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from most.mel import TARGET_RMS, MelSpec, mel_filterbank

#: Momentum of fast Griffin-Lim; 0.99 is the value recommended by its authors.
MOMENTUM = 0.99
#: Multiplicative NNLS updates after the pseudo-inverse (removes negative lobes cheaply).
NNLS_STEPS = 10


class GriffinLim:
    """``(B, T, n_mels)`` natural-log mel magnitudes -> ``(B, T * hop)`` audio."""

    def __init__(self, spec: MelSpec, n_iter: int = 24, synth_hop: int = 160, synth_fft: int = 512):
        if spec.hop_length % synth_hop:
            raise ValueError(f"synth_hop {synth_hop} must divide hop_length {spec.hop_length}")
        self.spec, self.n_iter, self.synth_hop = spec, n_iter, synth_hop
        # Synthesis may use a shorter FFT than analysis: the mel bands cover the same frequencies,
        # magnitudes only differ by a constant (the window sum) that the output peak level absorbs,
        # and a 512-point STFT halves the cost of every Griffin-Lim iteration.
        self.synth = replace(spec, n_fft=synth_fft, win_length=min(spec.win_length, synth_fft))
        self.fb = mel_filterbank(self.synth)  # (F, M)
        self.fb_pinv = torch.linalg.pinv(self.fb)  # (M, F)
        self.window = torch.hann_window(self.synth.win_length)
        # The window centred in n_fft samples, as torch.stft / torch.istft place a shorter one.
        left = (self.synth.n_fft - self.synth.win_length) // 2
        self.frame_window = torch.nn.functional.pad(
            self.window, (left, self.synth.n_fft - self.synth.win_length - left)
        )

    def settings(self) -> dict:
        """What a reimplementation needs to render the same audio (``vocoder.json``)."""
        return {
            "vocoder": "griffin_lim",
            "gl_iters": self.n_iter,
            "mel": self.spec.to_dict(),
            "target_rms": TARGET_RMS,
            "log": "natural log of mel magnitude",
            "synth_hop": self.synth_hop,
            "synth_fft": self.synth.n_fft,
            "momentum": MOMENTUM,
            "nnls_steps": NNLS_STEPS,
        }

    def mel_to_linear(self, logmel: torch.Tensor) -> torch.Tensor:
        """``(B, T, M)`` log-mel -> ``(B, T, F)`` non-negative linear magnitude."""
        mel = logmel.exp()
        lin = torch.clamp(mel @ self.fb_pinv, min=1e-8)
        fbt = self.fb.T  # (M, F)
        for _ in range(NNLS_STEPS):
            # Lee-Seung update for min ||lin @ fb - mel|| with lin >= 0.
            lin = lin * (mel @ fbt) / torch.clamp((lin @ self.fb) @ fbt, min=1e-8)
        return lin

    def upsample(self, logmel: torch.Tensor) -> torch.Tensor:
        """Linear interpolation in time: ``(B, T, M)`` -> ``(B, T * r, M)``, r = hop / synth_hop."""
        r = self.spec.hop_length // self.synth_hop
        if r == 1:
            return logmel
        x = logmel.transpose(1, 2)  # (B, M, T)
        x = torch.nn.functional.interpolate(x, scale_factor=r, mode="linear", align_corners=False)
        return x.transpose(1, 2)

    def _stft(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, n)`` -> ``(B, T, F)`` complex, frame-major: ``torch.stft`` (transposed) with
        ``center=True`` (reflect padding), the hann window centred in ``n_fft``, onesided."""
        n_fft = self.synth.n_fft
        padded = torch.nn.functional.pad(wav[:, None], (n_fft // 2, n_fft // 2), mode="reflect")
        frames = padded[:, 0].unfold(-1, n_fft, self.synth_hop)  # (B, T, n_fft), a view
        return torch.fft.rfft(frames * self.frame_window, dim=-1)

    def _istft(self, spec: torch.Tensor, length: int, envelope: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` complex -> ``(B, length)``: ``torch.istft`` with ``center=True`` and the
        same window, its window-square ``envelope`` (:meth:`_envelope`) computed once per call."""
        frames = torch.fft.irfft(spec, n=self.synth.n_fft, dim=-1) * self.frame_window
        return self._overlap_add(frames.transpose(1, 2), length) / envelope

    def _envelope(self, t: int, length: int) -> torch.Tensor:
        """Overlap-added squared window of ``t`` frames over the ``length`` samples kept
        (:meth:`_istft`); torch.istft's normalisation."""
        sq = (self.frame_window**2)[None, :, None].expand(1, self.synth.n_fft, t)
        env = self._overlap_add(sq, length)[0]
        if bool((env.abs() < 1e-11).any()):
            raise ValueError("Griffin-Lim window overlap leaves samples with no window weight")
        return env

    def _overlap_add(self, frames: torch.Tensor, length: int) -> torch.Tensor:
        """``(B, n_fft, T)`` frames a hop apart, summed -> the ``(B, length)`` samples from
        ``n_fft // 2`` on (the padding ``center=True`` adds)."""
        n_fft, t = self.synth.n_fft, frames.shape[-1]
        full = n_fft + self.synth_hop * (t - 1)
        wav = torch.nn.functional.fold(
            frames, output_size=(1, full), kernel_size=(1, n_fft), stride=(1, self.synth_hop)
        )[:, 0, 0]
        return wav[:, n_fft // 2 : n_fft // 2 + length]

    @torch.no_grad()
    def __call__(self, logmel: torch.Tensor, seed: int = 0) -> torch.Tensor:
        squeeze = logmel.dim() == 2
        if squeeze:
            logmel = logmel[None]
        mag = self.mel_to_linear(self.upsample(logmel.float()))  # (B, T', F), frame-major
        b, t, f = mag.shape
        n_samples = (t - 1) * self.synth_hop
        envelope = self._envelope(t, n_samples)
        # Fixed-seed random phase, drawn bin-major: decode is deterministic and avoids zero-phase
        # buzz.
        gen = torch.Generator().manual_seed(seed)
        phase = torch.rand((b, f, t), generator=gen).transpose(1, 2).contiguous()
        # Spectra on their real views (..., 2): magnitude times unit phase without complex math.
        spec = torch.view_as_real(torch.exp(2j * torch.pi * phase)) * mag[..., None]
        prev = torch.zeros_like(spec)
        for _ in range(self.n_iter):
            wav = self._istft(torch.view_as_complex(spec), n_samples, envelope)
            rebuilt = torch.view_as_real(self._stft(wav))
            accel = torch.sub(rebuilt, prev, alpha=MOMENTUM / (1 + MOMENTUM))
            re, im = accel.unbind(-1)
            # The accelerated estimate's phase, at the target magnitude.
            scale = torch.rsqrt((re * re + im * im).clamp_(min=1e-16)).mul_(mag)
            spec = accel * scale[..., None]
            prev = rebuilt
        wav = self._istft(torch.view_as_complex(spec), n_samples, envelope)
        # Keep a safe peak level: the mel analysis normalised the level, so peaks are modest,
        # but a loud centroid sequence must not clip when written to 16-bit PCM.
        peak = wav.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8)
        wav = wav * torch.clamp(0.9 / peak, max=1.0)
        return wav[0] if squeeze else wav
