"""Inference: ASR, TTS and chat on an adapted model, batched, with the KV cache.

Every prompt is built by :class:`most.data.prompts.Prompts` (the formats the model was trained on)
and generation stops on :meth:`Prompts.stop_ids`. Batches are left-padded so that ``generate``
appends to every row at the same position; ``transformers``' ``generate`` keeps the KV cache
(``use_cache=True``), and ``max_new_tokens`` is the length guard: an answer that never emits a stop
id is cut there.

    lm = SpeechLM.load("runs/demo/stage2/hf", units="runs/demo/units")
    lm.asr([wav])                     -> ["the capital of velmora is tarsk"]
    lm.tts(["hello"])                 -> [float32 (n,) at 16 kHz]
    lm.chat([{"text": "...", "audio": wav}], speak=True) -> Reply(text, units, audio)

A model with an audio adapter (``config.adapter``, :mod:`most.moe.adapter`) hears audio through
it: ``asr`` and ``chat`` compute the frozen features its config names (:mod:`most.units.frontend`)
and put one placeholder (unit 0) per adapter token where the units would be; no unit tokenizer is
needed for them. Spoken answers and TTS still write units: multi-codebook ones frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer

import most.modeling  # noqa: F401  (registers the adapted model class)
from most.data.collate import audio_inputs
from most.data.prompts import Prompts
from most.layout import BEGIN_OF_AUDIO, END_OF_AUDIO, LayoutError, TokenLayout
from most.moe.adapter import adapter_lengths, join_clips
from most.threads import single_thread
from most.units import UnitTokenizer, load_tokenizer
from most.units.base import TOKENIZER_FILE
from most.units.constraint import codebook_rules, whole_frames
from most.units.frontend import AudioFrontend, FrontendConfig
from most.weights import AUTO, load_causal_lm

#: Folder name of the unit tokenizer inside a release (written by ``most release``).
UNITS_DIR = "unit_tokenizer"


@dataclass(frozen=True)
class Sampling:
    """Decoding settings (``--sampling.*``). Greedy unless ``do_sample``."""

    max_new_tokens: int = 256
    """Length guard: answers are cut here if no stop id comes."""
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 = no top-k filter."""
    batch_size: int = 16
    seed: int = 0
    guidance: float = 1.0
    """Classifier-free guidance of spoken units (TTS and spoken answers; 1 = off): each unit is
    chosen from ``log p(u | prompt) + (g - 1) * (log p(u | prompt) - log p(u | speech alone))``,
    the unconditional branch being the speech-LM context ``<|user|> <|asr|> <|begin_of_audio|>``
    that stage 1 trains. Above 1 it weighs what the text asks for against what speech usually
    says next (transformers' ``guidance_scale``; one more forward pass per unit)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0 or self.batch_size <= 0:
            raise ValueError("sampling.max_new_tokens and sampling.batch_size must be > 0")
        if self.guidance < 1:
            raise ValueError(f"sampling.guidance must be >= 1 (1 = off), got {self.guidance}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("sampling.temperature must be > 0 and sampling.top_p in (0, 1]")


GREEDY = Sampling()


@dataclass(frozen=True)
class Reply:
    """A chat answer: text, and for spoken answers the units and 16 kHz audio."""

    text: str
    units: list[int] | None = None
    audio: np.ndarray | None = None


def find_unit_tokenizer(model_dir: Path, units: str | Path | None) -> UnitTokenizer | None:
    """``units`` (tokenizer folder, RUN/units or RUN), else the release's ``unit_tokenizer/``."""
    if units is not None:
        return load_tokenizer(units)
    if (model_dir / UNITS_DIR / TOKENIZER_FILE).is_file():
        return load_tokenizer(model_dir / UNITS_DIR)
    return None


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; an explicit CUDA device on a
    machine without one is refused here rather than deep inside ``model.to``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is visible (use cpu or auto)")
    return device


def device_of(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s weights are (the CPU for a module without any)."""
    return next(model.parameters(), torch.empty(0)).device


class SpeechLM:
    """An adapted model with its text tokenizer, token layout, prompts and unit tokenizer."""

    def __init__(self, model, tokenizer, layout: TokenLayout, units: UnitTokenizer | None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.layout = layout
        self.units = units
        self.prompts = Prompts(layout, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.prompts.eos_id)
        cfg = getattr(model, "config", None)
        adapter = getattr(cfg, "adapter", None)
        self.frontend = None
        if adapter is not None:
            self.frontend = AudioFrontend(FrontendConfig(**cfg.audio_frontend))
            self.stack = int(adapter["stack"])

    @classmethod
    def load(
        cls, model_dir: str | Path, units: str | Path | None = None, device: str = "auto"
    ) -> SpeechLM:
        """Load and cross-check model, tokenizer, layout and unit tokenizer; the model goes to
        ``device`` (:func:`resolve_device`: ``auto`` is the GPU when there is one).

        Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` (``LayoutError``) when
        the layout file, the model config and the unit tokenizer disagree.
        """

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir}: no model folder (config.json missing)")
        layout = TokenLayout.load(model_dir)
        # Checked on the config, before any weights are read.
        stored = getattr(AutoConfig.from_pretrained(str(model_dir)), "layout", None)
        if stored is None or TokenLayout.from_dict(stored).hash != layout.hash:
            raise LayoutError(
                f"{model_dir}: token_layout.json (hash {layout.hash}) does not match the model "
                "config's layout; the folder mixes files from different models"
            )
        device = resolve_device(device)
        # The checkpoint's own dtype on a GPU (one copy in host RAM on the way); fp32 on the CPU.
        dtype = torch.float32 if device == "cpu" else AUTO
        model = load_causal_lm(model_dir, dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        unit_tok = find_unit_tokenizer(model_dir, units)
        if unit_tok is not None:
            layout.check_units(unit_tok.hash, where=str(units or model_dir / UNITS_DIR))
        return cls(model.to(device), tokenizer, layout, unit_tok)

    # ---- core decoding -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        stop_ids: Sequence[int],
        sampling: Sampling = GREEDY,
        on_batch: Callable[[int], None] | None = None,
        guided: bool = False,
        keep_stop: bool = False,
        features: Sequence[torch.Tensor | None] | None = None,
    ) -> list[list[int]]:
        """Continue every prompt; returns the new ids of each, up to (not including) a stop id.

        Prompts are sorted by length and left-padded into batches of ``sampling.batch_size``;
        ``on_batch(n)`` is called after each batch (progress bars). ``guided``: the continuation
        is speech, apply ``sampling.guidance``. ``keep_stop``: the stop id that ended an answer
        stays on it (the exact sequence the model wrote, for scoring it again); an answer cut by
        ``max_new_tokens`` has none. ``features``: per prompt, the audio frames (``(F, D)``, see
        :meth:`hear`) whose adapter tokens replace its placeholders, or None.
        """
        if any(len(p) == 0 for p in prompts):
            raise ValueError("empty prompt")
        torch.manual_seed(sampling.seed)
        device = self.model.device
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: dict[int, list[int]] = {}
        kwargs = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": sampling.do_sample,
            "eos_token_id": list(stop_ids),
            "pad_token_id": self.pad_id,
            "use_cache": True,
            "logits_processor": codebook_rules(self.layout, self.units),  # [] for one codebook
        }
        if sampling.do_sample:
            kwargs |= {"temperature": sampling.temperature, "top_p": sampling.top_p}
            kwargs |= {"top_k": sampling.top_k or None}
        unconditional = self.prompts.speech_lm_prompt() if guided else []
        for s in range(0, len(order), sampling.batch_size):
            idx = order[s : s + sampling.batch_size]
            if guided and sampling.guidance != 1:
                # the same 3-token prompt in every row: no padding in the unconditional branch
                neg = torch.tensor([unconditional] * len(idx), device=device)
                kwargs |= {"guidance_scale": sampling.guidance, "negative_prompt_ids": neg}
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(idx):
                n = len(prompts[i])
                ids[row, width - n :] = torch.as_tensor(list(prompts[i]))
                mask[row, width - n :] = 1
            audio = {}
            rows = [features[i] for i in idx] if features else []
            if any(f is not None for f in rows):  # placeholders: unit-0 ids (no real units here)
                audio = audio_inputs(ids, rows, self.layout.unit_range()[0])
                audio = {k: v.to(device) for k, v in audio.items()}
            seqs = self.model.generate(
                ids.to(device), attention_mask=mask.to(device), **kwargs, **audio
            )[:, width:].tolist()
            for row, i in enumerate(idx):
                out[i] = _cut(seqs[row], set(stop_ids), keep_stop)
            if on_batch is not None:
                on_batch(len(idx))
        return [out[i] for i in range(len(prompts))]

    def text_of(self, ids: Sequence[int]) -> str:
        """Answer ids -> text; specials and units dropped."""
        keep = [i for i in ids if i < self.layout.text_vocab_size]
        return self.tokenizer.decode(keep, skip_special_tokens=True).strip()

    def units_of(self, ids: Sequence[int]) -> list[int]:
        return self.layout.ids_to_units(torch.as_tensor(list(ids), dtype=torch.long)).tolist()

    # ---- audio <-> units ---------------------------------------------------------------------
    def _unit_tok(self) -> UnitTokenizer:
        if self.units is None:
            raise FileNotFoundError(
                "no unit tokenizer: pass units=RUN/units or use a release folder"
            )
        return self.units

    def encode(self, wavs: Sequence[np.ndarray], sr: int = 16_000) -> list[list[int]]:
        """Float32 audio ``(n_i,)`` at ``sr`` -> unit indices per utterance."""
        with single_thread():
            return [u.tolist() for u in self._unit_tok().encode_batch(list(wavs), sr)]

    def vocode(self, units: Sequence[int]) -> np.ndarray:
        """Unit indices (whole frames of them) -> float32 audio at 16 kHz (empty for no units)."""
        units = whole_frames(units, self.units)
        if len(units) == 0:
            return np.zeros(0, dtype=np.float32)
        tok = self._unit_tok()
        with single_thread():
            return tok.decode(torch.as_tensor(list(units), dtype=torch.long)).numpy()

    # ---- tasks -------------------------------------------------------------------------------
    def asr_units(
        self, units: Sequence[Sequence[int]], sampling: Sampling = GREEDY, **kw
    ) -> list[str]:
        prompts = [self.prompts.asr_prompt(u) for u in units]
        return [self.text_of(a) for a in self.generate(prompts, self._text_stops(), sampling, **kw)]

    def asr(self, wavs: Sequence[np.ndarray], sampling: Sampling = GREEDY, **kw) -> list[str]:
        if self.frontend is None:
            return self.asr_units(self.encode(wavs), sampling, **kw)
        feats = self.hear(wavs)
        prompts = [self.prompts.asr_prompt(self.placeholders(f)) for f in feats]
        answers = self.generate(prompts, self._text_stops(), sampling, features=feats, **kw)
        return [self.text_of(a) for a in answers]

    # ---- audio through the adapter -------------------------------------------------------------
    def hear(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """16 kHz audio -> the adapter's frozen frames ``(F_i, D)`` per utterance."""
        if self.frontend is None:
            raise ValueError("this model has no audio adapter: audio enters as units")
        with single_thread():
            return [self.frontend.features(w) for w in wavs]

    def placeholders(self, feats: torch.Tensor) -> list[int]:
        """The stand-in units (unit 0, one per adapter token) a prompt holds for ``feats``."""
        return [0] * int(adapter_lengths(feats.shape[0], self.stack))

    def tts_units(self, texts: Sequence[str], sampling: Sampling = GREEDY, **kw) -> list[list[int]]:
        if any(not t.strip() for t in texts):
            raise ValueError("empty text: nothing to speak")
        prompts = [self.prompts.tts_prompt(t) for t in texts]
        return [
            self.units_of(a)
            for a in self.generate(prompts, self._audio_stops(), sampling, guided=True, **kw)
        ]

    def tts_ids(self, texts: Sequence[str], sampling: Sampling = GREEDY, **kw) -> list[list[int]]:
        """The ids the model writes after each TTS prompt, its stop id kept (``generate``'s
        ``keep_stop``): ``units_of`` gives the units."""
        if any(not t.strip() for t in texts):
            raise ValueError("empty text: nothing to speak")
        prompts = [self.prompts.tts_prompt(t) for t in texts]
        return self.generate(
            prompts, self._audio_stops(), sampling, guided=True, keep_stop=True, **kw
        )

    def tts(self, texts: Sequence[str], sampling: Sampling = GREEDY, **kw) -> list[np.ndarray]:
        return [self.vocode(u) for u in self.tts_units(texts, sampling, **kw)]

    def s2t_units(
        self, units: Sequence[Sequence[int]], sampling: Sampling = GREEDY, **kw
    ) -> list[str]:
        prompts = [self.prompts.s2t_prompt(u) for u in units]
        return [self.text_of(a) for a in self.generate(prompts, self._text_stops(), sampling, **kw)]

    def s2s_units(
        self, units: Sequence[Sequence[int]], sampling: Sampling = GREEDY, **kw
    ) -> list[tuple[str, list[int]]]:
        """Spoken question -> (answer text, answer units); text part empty in ``units`` mode."""
        return self._speak([self.prompts.s2s_prompt(u) for u in units], sampling, **kw)

    def chat_prompt(self, messages: Sequence[dict], speak: bool = False) -> list[int]:
        """Turns ``{"role": "user"|"assistant", "text": str?, "units": list[int]?}`` -> prompt ids.

        A user turn is ``<|user|> text <|boa|> units <|eoa|> <|text_answer|>|<|speech_answer|>
        <|assistant|>``: with text only it is exactly the ``instruct`` prompt, with audio only
        exactly ``s2t``/``s2s``. Earlier assistant turns are appended with their end marker.
        """
        p, ids = self.prompts, []
        for i, m in enumerate(messages):
            text, units = (m.get("text") or "").strip(), m.get("units")
            if m.get("role", "user") == "assistant":
                ids += [*p.text(text), p.sp("<|end_of_turn|>")]
                continue
            if not text and units is None:
                raise ValueError(f"message {i}: needs text or audio")
            last = i == len(messages) - 1
            answer = "<|speech_answer|>" if speak and last else "<|text_answer|>"
            ids += [p.sp("<|user|>"), *p.text(text)] if text else [p.sp("<|user|>")]
            ids += p.audio(units) if units is not None else []
            ids += [p.sp(answer), p.sp("<|assistant|>")]
        return ids

    def chat(
        self, messages: Sequence[dict], speak: bool = False, sampling: Sampling = GREEDY
    ) -> Reply:
        """One answer to a conversation; ``messages[i]["audio"]`` (16 kHz float32) is encoded
        (heard through the adapter when the model has one)."""
        clips, msgs = [], []
        for m in messages:
            if m.get("audio") is not None and self.frontend is not None:
                clips += self.hear([m["audio"]])
                m = {**m, "units": self.placeholders(clips[-1])}
            elif m.get("audio") is not None:
                m = {**m, "units": self.encode([m["audio"]])[0]}
            msgs.append(m)
        prompt = self.chat_prompt(msgs, speak)
        feats = [join_clips(clips, self.stack)] if clips else None
        if not speak:
            (answer,) = self.generate([prompt], self._text_stops(), sampling, features=feats)
            return Reply(self.text_of(answer))
        ((text, units),) = self._speak([prompt], sampling, features=feats)
        return Reply(text, units, self.vocode(units) if self.units is not None else None)

    # ---- helpers ----------------------------------------------------------------------------
    def _text_stops(self) -> list[int]:
        return self.prompts.stop_ids()

    def _audio_stops(self) -> list[int]:
        # Units end with <|end_of_audio|>; <|end_of_turn|> ends text, not speech.
        return [self.layout.special_id(END_OF_AUDIO), self.prompts.eos_id]

    def _speak(
        self,
        prompts: Sequence[Sequence[int]],
        sampling: Sampling,
        on_batch: Callable[[int], None] | None = None,
        features: Sequence[torch.Tensor | None] | None = None,
    ) -> list[tuple[str, list[int]]]:
        """A spoken answer in the trained text-then-units format (:meth:`speak_ids`), as text and
        units."""
        said = self.speak_ids(prompts, sampling, on_batch, features)
        return [(self.text_of(t), self.units_of(u)) for t, u in said]

    def speak_ids(
        self,
        prompts: Sequence[Sequence[int]],
        sampling: Sampling = GREEDY,
        on_batch: Callable[[int], None] | None = None,
        features: Sequence[torch.Tensor | None] | None = None,
    ) -> list[tuple[list[int], list[int]]]:
        """``(text ids, unit ids)`` of a spoken answer to each prompt, the format enforced: the
        text part ends at whatever would end a text answer (not kept), then
        ``<|begin_of_audio|>`` is appended and the units follow, their stop id kept; so the
        answer as the model is trained on it is ``text ids + [<|begin_of_audio|>] + unit ids``.
        (Tiny demo after stage 2: left to itself the model closed 2 of 6 spoken answers with
        <|end_of_turn|>, as in S->T, and never spoke.) Prompts ending with
        ``<|begin_of_audio|>`` (``units`` mode) go straight to the units (text ids empty)."""
        boa = self.layout.special_id(BEGIN_OF_AUDIO)
        talk = [i for i, p in enumerate(prompts) if p[-1] != boa]
        stops = [*self._text_stops(), boa, self.layout.special_id(END_OF_AUDIO)]
        # Passed only when there is audio for the adapter (callers may stand in for generate).
        talk_kw = {"features": [features[i] for i in talk]} if features else {}
        talk_prompts = [prompts[i] for i in talk]
        written = iter(self.generate(talk_prompts, stops, sampling, **talk_kw) if talk else [])
        texts = [next(written) if p[-1] != boa else [] for p in prompts]
        speech = [
            [*p, *t, boa] if p[-1] != boa else [*p] for p, t in zip(prompts, texts, strict=True)
        ]
        kw = {"features": features} if features else {}
        units = self.generate(
            speech, self._audio_stops(), sampling, on_batch, guided=True, keep_stop=True, **kw
        )
        return list(zip(texts, units, strict=True))


def _cut(ids: list[int], stops: set[int], keep: bool = False) -> list[int]:
    """Ids up to the first stop id, which ``keep`` keeps (padding after a finished row is a stop
    id or pad)."""
    for k, t in enumerate(ids):
        if t in stops:
            return ids[: k + 1] if keep else ids[:k]
    return ids
