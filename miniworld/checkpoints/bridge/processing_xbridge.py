"""XBridgeProcessor: the NMT tokenizer and the LLM tokenizer, producing every tensor the model takes.

Separate tensors per vocabulary (never one mixed `input_ids`): NMT source ids, LLM prompt ids, LLM answer ids,
NMT decoder labels, NMT ids of the English answer (for the OT term). Language tags are placed as the NMT family
declares (`languages_xbridge.FAMILIES`), around the tokenizer's plain text ids. Part of the flat Hub bundle.
"""

import warnings

from transformers import AutoTokenizer, BatchFeature, ProcessorMixin

try:  # relative import for the Hub bundle; plain import when the project root is on sys.path
    from .configuration_xbridge import ENGLISH, check_implied_lang, implied_langs, unknown_lang_error
    from .languages_xbridge import decode_without_tags, detect_family, language_control, tagged_ids
except ImportError:
    from configuration_xbridge import ENGLISH, check_implied_lang, implied_langs, unknown_lang_error
    from languages_xbridge import decode_without_tags, detect_family, language_control, tagged_ids

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{query}\n\n### Response:"
)


def prompt_query(text: str | None, instruction: str | None) -> str:
    """What the LLM is asked: the instruction, then the text, on two lines (either may be absent)."""
    return "\n".join(part for part in (instruction, text) if part)


def chat_prompt(tokenizer, text: str | None, instruction: str | None) -> str:
    """`prompt_query` as a user turn in the tokenizer's chat template, then the generation prompt: how the bridge
    and every system that prompts an instruct LLM (eval's baselines, the SFT baseline, the mini-world) ask it."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt_query(text, instruction)}], tokenize=False, add_generation_prompt=True
    )


class XBridgeProcessor(ProcessorMixin):
    r"""
    Args:
        nmt_tokenizer: the NMT's tokenizer, source text and decoder targets: of any family in
            `languages_xbridge.FAMILIES` (NLLB, M2M100, mBART-50, T5/MADLAD-400, Marian), or a bilingual one whose
            source and target vocabularies may differ (`MarianTokenizer` with `separate_vocabs`; `text_target=`
            tokenises with the target side).
        llm_tokenizer: the LLM tokenizer, prompt and English answer.
        prompt_template (`str`): plain template with `{query}`, used when the LLM tokenizer has no chat template
            or `use_chat_template=False`.
        use_chat_template (`bool`): wrap the query with the LLM's chat template when it has one.
        source_in_prompt (`bool`): also put the raw source text in the LLM prompt (the paper's stages 2-3 do).
        max_source_length, max_answer_length, max_target_length (`int`): truncation limits, in tokens.
        nmt_source_lang, nmt_target_lang (`str`): a bilingual NMT's implied languages (as in `XBridgeConfig`): no
            language token is added, and any other `src_lang` / `tgt_lang` is an error naming the one it takes.
        ot_vocabulary (`str`): which side of the NMT tokenizer encodes the English answers for the OT term:
            "source" (NLLB: one vocabulary) or "target" (an NMT composed from two directions, whose decoder's own
            encoder, the OT reference, reads its target vocabulary).
        nmt_family (`str`): the NMT's language control (`XBridgeConfig.nmt_family`); None: told by the tokenizer.
    """

    def __init__(
        self,
        nmt_tokenizer=None,
        llm_tokenizer=None,
        prompt_template: str = ALPACA_TEMPLATE,
        use_chat_template: bool = True,
        source_in_prompt: bool = True,
        max_source_length: int = 512,
        max_answer_length: int = 512,
        max_target_length: int = 512,
        nmt_source_lang: str | None = None,
        nmt_target_lang: str | None = None,
        ot_vocabulary: str = "source",
        nmt_family: str | None = None,
    ):
        # Extra settings are plain attributes set before ProcessorMixin.__init__, which accepts only the
        # sub-components; they round-trip through processor_config.json because they are __init__ parameters.
        self.prompt_template = prompt_template
        self.use_chat_template = use_chat_template
        self.source_in_prompt = source_in_prompt
        self.max_source_length = int(max_source_length)
        self.max_answer_length = int(max_answer_length)
        self.max_target_length = int(max_target_length)
        if ot_vocabulary not in ("source", "target"):
            raise ValueError(f"ot_vocabulary={ot_vocabulary!r} is not one of 'source', 'target'")
        self.nmt_source_lang, self.nmt_target_lang, self.ot_vocabulary = nmt_source_lang, nmt_target_lang, ot_vocabulary
        super().__init__(nmt_tokenizer, llm_tokenizer)
        self.nmt_family = nmt_family or detect_family(self.nmt_tokenizer)
        self.lang_code_to_id = language_control(self.nmt_family).lang_codes(self.nmt_tokenizer)
        if self.llm_tokenizer.pad_token_id is None:
            self.llm_tokenizer.pad_token = self.llm_tokenizer.eos_token

    @classmethod
    def from_bases(cls, nmt_name_or_path, llm_name_or_path, **kwargs):
        hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs}
        nmt = AutoTokenizer.from_pretrained(nmt_name_or_path, trust_remote_code=kwargs.pop("trust_remote_code", False), **hub)
        llm = AutoTokenizer.from_pretrained(llm_name_or_path, **hub)
        return cls(nmt, llm, **kwargs)

    @property
    def lang_codes(self) -> list[str]:
        """The NLLB codes of every language this NMT has a tag for (`eng_Latn`, `swh_Latn`, ...); a bilingual
        NMT's source languages."""
        return implied_langs(self.nmt_source_lang) or list(self.lang_code_to_id)

    def check_lang(self, code: str, kind: str) -> str:
        implied = self.nmt_target_lang if kind == "tgt_lang" else self.nmt_source_lang
        if implied is not None:
            check_implied_lang(kind, code, implied)
        elif code not in self.lang_code_to_id:  # tokenizers map an unknown tag silently to <unk>: validate explicitly
            raise unknown_lang_error(kind, code, self.lang_codes, self.nmt_family)
        return code

    def build_prompt(self, text: str, instruction: str | None) -> str:
        text = text if self.source_in_prompt else None
        if self.use_chat_template and getattr(self.llm_tokenizer, "chat_template", None):
            return chat_prompt(self.llm_tokenizer, text, instruction)
        return self.prompt_template.format(query=prompt_query(text, instruction))

    def _nmt_ids(self, texts, lang, limit, what, target=False):
        """NMT ids, truncated to `limit` with a warning that says how much: `[tag, ..., </s>]` where the family
        puts a tag there (NLLB, M2M100, mBART-50: the language's own; T5, Marian: English's on the source side,
        none on the target side), else `[..., </s>]` (a bilingual NMT; `lang` None: the English of the OT term)."""
        if lang is not None:
            self.check_lang(lang, "tgt_lang" if target else "src_lang")
        control, lead = language_control(self.nmt_family), None
        if lang is not None and (self.nmt_target_lang if target else self.nmt_source_lang) is None:
            place = control.target if target else control.source
            if place in ("own", "decoder"):
                lead = self.lang_code_to_id[lang]
            elif place == "english":
                lead = self.lang_code_to_id.get(ENGLISH)
        ids = tagged_ids(self.nmt_tokenizer, texts, lead, target)
        return self._truncate(ids, limit, what, keep_last=True)

    def _decoder_lang_ids(self, tgt_lang, n):
        """For a family whose decoder reads the language from its encoder (T5, Marian): the tag's id per row,
        which the model encodes and puts before the decoder memory. None where the tag is in the labels."""
        if self.nmt_target_lang is not None or language_control(self.nmt_family).target != "memory":
            return None
        return [[self.lang_code_to_id[tgt_lang]]] * n

    def _ot_ids(self, answers):
        """The English answers as the OT reference encoder reads them (`ot_vocabulary`)."""
        if self.nmt_source_lang is None and self.nmt_target_lang is None:
            return self._nmt_ids(answers, ENGLISH, self.max_answer_length, "English answers (OT)")  # NLLB
        return self._nmt_ids(answers, None, self.max_answer_length, "English answers (OT)", self.ot_vocabulary == "target")

    @staticmethod
    def _truncate(ids, limit, what, keep_last):
        too_long = [len(x) for x in ids if len(x) > limit]
        if too_long:
            warnings.warn(
                f"{len(too_long)} of {len(ids)} {what} truncated to {limit} tokens (longest: {max(too_long)} tokens, "
                f"{max(too_long) - limit} dropped)",
                stacklevel=3,
            )
            # Keep the final special token (NLLB's </s>, the LLM's EOS): the models expect it.
            ids = [x[: limit - 1] + x[-1:] if keep_last and len(x) > limit else x[:limit] for x in ids]
        return ids

    @staticmethod
    def _pad(ids, pad_id, left=False):
        longest = max(len(x) for x in ids)
        rows, masks = [], []
        for x in ids:
            pad = [pad_id] * (longest - len(x))
            rows.append(pad + x if left else x + pad)
            masks.append([0] * len(pad) + [1] * len(x) if left else [1] * len(x) + [0] * len(pad))
        return rows, masks

    def __call__(
        self,
        texts=None,
        src_lang: str | None = None,
        instruction: str | None = None,
        prompt: bool = True,
        answers=None,
        targets=None,
        tgt_lang: str | None = None,
        ot_targets: bool = False,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Every tensor `XBridgeForConditionalGeneration` takes, from raw text.

        texts: source texts in `src_lang`; instruction: task instruction for the LLM prompt (`prompt=False`:
        no prompt, as in stage 1); answers: English answers (training); targets + tgt_lang: decoder targets
        (training); ot_targets: also the NLLB encoding of the English answers (the OT term's reference).
        """
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("empty batch: `texts` must hold at least one string")
        if src_lang is None:
            raise ValueError(f"src_lang is required, one of the NMT's codes, e.g. {self.lang_codes[:5]}")
        data = {}
        ids = self._nmt_ids(texts, src_lang, self.max_source_length, "source texts")
        data["input_ids"], data["attention_mask"] = self._pad(ids, self.nmt_tokenizer.pad_token_id)
        llm = self.llm_tokenizer
        if prompt:
            prompts = [self.build_prompt(t, instruction) for t in texts]
            prompt_ids = llm(prompts, add_special_tokens=False)["input_ids"]
            # The model puts the LLM's BOS first itself ([bos, source, boundary, prompt, answer], as the released code
            # does): a chat template that opens with it (Llama 3, Gemma) would repeat it mid-sequence, after the source.
            if llm.bos_token_id is not None:
                prompt_ids = [x[1:] if x[:1] == [llm.bos_token_id] else x for x in prompt_ids]
            data["prompt_ids"], data["prompt_attention_mask"] = self._pad(prompt_ids, llm.pad_token_id, left=True)
        if answers is not None:
            answers = [answers] if isinstance(answers, str) else list(answers)
            if len(answers) != len(texts):
                raise ValueError(f"got {len(answers)} answers for {len(texts)} texts: give one answer per text")
            answer_ids = [x + [llm.eos_token_id] for x in llm(answers, add_special_tokens=False)["input_ids"]]
            answer_ids = self._truncate(answer_ids, self.max_answer_length, "answers", keep_last=True)
            data["answer_ids"], data["answer_attention_mask"] = self._pad(answer_ids, llm.pad_token_id)
            if ot_targets:
                ot_ids = self._ot_ids(answers)
                data["ot_target_ids"], data["ot_target_attention_mask"] = self._pad(ot_ids, self.nmt_tokenizer.pad_token_id)
        if targets is not None:
            targets = [targets] if isinstance(targets, str) else list(targets)
            if tgt_lang is None:
                raise ValueError("targets were given without tgt_lang: name their NLLB code, e.g. 'swh_Latn'")
            if len(targets) != len(texts):
                raise ValueError(f"got {len(targets)} targets for {len(texts)} texts: give one target per text")
            label_ids = self._nmt_ids(targets, tgt_lang, self.max_target_length, "targets", target=True)
            data["labels"], _ = self._pad(label_ids, -100)
            decoder_lang_ids = self._decoder_lang_ids(tgt_lang, len(targets))
            if decoder_lang_ids is not None:
                data["decoder_lang_ids"] = decoder_lang_ids
        return BatchFeature(data=data, tensor_type=return_tensors)

    def batch_decode(self, sequences, skip_special_tokens: bool = True, from_llm: bool = False, **kwargs):
        """Decode the decoder's output (NLLB ids), or the LLM's English (`from_llm=True`); a dict per language too."""
        if isinstance(sequences, dict):
            return {lang: self.batch_decode(ids, skip_special_tokens, from_llm, **kwargs) for lang, ids in sequences.items()}
        if from_llm:
            return self.llm_tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)
        return [self.decode(row, skip_special_tokens, **kwargs) for row in sequences]

    def decode(self, sequence, skip_special_tokens: bool = True, from_llm: bool = False, **kwargs):
        if from_llm:
            return self.llm_tokenizer.decode(sequence, skip_special_tokens=skip_special_tokens, **kwargs)
        if skip_special_tokens:  # language tags too
            return decode_without_tags(self.nmt_tokenizer, sequence, set(self.lang_code_to_id.values()), **kwargs)
        return self.nmt_tokenizer.decode(sequence, skip_special_tokens=False, **kwargs)

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "prompt_ids", "prompt_attention_mask"]


XBridgeProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["ALPACA_TEMPLATE", "XBridgeProcessor", "chat_prompt", "prompt_query"]
