"""The Griffin-Lim vocoder's own STFT pair equals torch's, and it inverts a real recording's mel."""

from __future__ import annotations

import torch

from most.audio import read_audio
from most.ctc.model import MEL
from most.mel import LogMel
from most.units.vocoder import GriffinLim


def test_stft_pair_matches_torch() -> None:
    gl = GriffinLim(MEL)
    kw = dict(
        n_fft=gl.synth.n_fft,
        hop_length=gl.synth_hop,
        win_length=gl.synth.win_length,
        window=gl.window,
        center=True,
    )
    wav = torch.randn(2, 16_000)
    spec = gl._stft(wav)
    torch.testing.assert_close(spec, torch.stft(wav, return_complex=True, **kw).transpose(1, 2))
    t = spec.shape[1]
    n = (t - 1) * gl.synth_hop
    ours = gl._istft(spec, n, gl._envelope(t, n))
    torch.testing.assert_close(ours, torch.istft(spec.transpose(1, 2), length=n, **kw))
    torch.testing.assert_close(ours, wav[:, :n], atol=1e-5, rtol=1e-5)  # a perfect round trip


def test_griffin_lim_inverts_a_recordings_mel(realdata) -> None:
    """Mel -> audio -> mel of a real recording comes back close (spectral convergence)."""
    wav = torch.from_numpy(read_audio(realdata / "ljspeech" / "LJ002-0020.wav", max_seconds=4.0))
    logmel = LogMel(MEL)
    mel = logmel(wav)  # (T, 80)
    gl = GriffinLim(MEL)
    audio = gl(mel)
    assert audio.shape == ((mel.shape[0] * MEL.hop_length // gl.synth_hop - 1) * gl.synth_hop,)
    assert 0.01 < float(audio.abs().max()) <= 0.9 + 1e-6  # audible, never clipping
    again = logmel(audio)[: mel.shape[0]]
    a, b = mel.exp(), again.exp()
    b = b * (a.norm() / b.norm())  # the vocoder sets its own level
    convergence = float((a - b).norm() / a.norm())
    assert convergence < 0.2, convergence  # 0.11 for this recording
    torch.testing.assert_close(gl(mel), audio)  # deterministic
