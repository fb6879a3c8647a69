"""A deterministic small multilingual world: English arithmetic word problems, general sentences, and
synthetic languages derived from English by rule.

Every sentence is first built as a small structure (a `Clause`, an equation or an answer) and then *realised*
in English or in a synthetic language. A synthetic language is English with:
- its own generated vocabulary (one word per English lexeme, in its own script),
- its own word order (SVO, SOV or VSO; adpositions before or after the noun phrase),
- morphology: a plural affix on counted nouns and an accusative affix on objects (prefix or suffix),
- its own script (Latin, Cyrillic, Thai, Devanagari, Greek, Armenian blocks).
Numbers stay as digits in every language, so an answer is the same number everywhere.

Codes are private-use ISO 639-3 style (`qaa`..`qtz`), so they can never be mistaken for real languages.
One language is "unseen" (known to the translation model only, held out of all XBridge stages) and one is
"low-resource" (a small fraction of the translation and task data).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from configuration_xbridge import ENGLISH

from .runs import write_jsonl

# The prompt the English LLM is trained with (short Alpaca form of the paper's math prompt). `{question}` is the
# question text; the LLM continues with the reasoning and "The answer is N.".
# One line, no newlines: the LLM tokenizer isolates punctuation, and a newline would glue itself to the next word.
LLM_PROMPT = "### Instruction: {question} ### Response: Let's think step by step."
# Instruction lines that evaluation harnesses put before a question (the eval/ defaults among them); a share of the
# LLM's training prompts carry one so that the LLM, like an instruction-tuned one, is not thrown by them.
INSTRUCTION_VARIANTS = [
    'Solve the following math problem step by step. End with "The answer is N".',
    'Solve the following math problem step by step. End with "The answer is N". Respond in English.',
    "Respond in English.",
]


def short_code(code: str) -> str:
    """Short code used in file names and tables: "en" for English, else the private-use part ("qaa")."""
    return "en" if code == ENGLISH else code.split("_")[0]

# ----------------------------------------------------------------------------------------------------------
# English lexicon. Keys are lexeme ids; values are the English forms the realiser needs.
# ----------------------------------------------------------------------------------------------------------
NAMES = ["Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Omar", "Lena", "Ravi", "Yuki", "Paul", "Nora"]
# countable objects: (singular, plural, edible?)
OBJECTS = {
    "apple": ("apple", "apples", True), "book": ("book", "books", False), "pen": ("pen", "pens", False),
    "egg": ("egg", "eggs", True), "cookie": ("cookie", "cookies", True), "marble": ("marble", "marbles", False),
    "card": ("card", "cards", False), "flower": ("flower", "flowers", False), "coin": ("coin", "coins", False),
    "orange": ("orange", "oranges", True), "toy": ("toy", "toys", False), "cake": ("cake", "cakes", True),
}
CONTAINERS = {"bag": ("bag", "bags"), "box": ("box", "boxes"), "basket": ("basket", "baskets")}
PEOPLE = {"friend": ("friend", "friends"), "child": ("child", "children"), "teacher": ("teacher", "teachers"),
          "farmer": ("farmer", "farmers"), "doctor": ("doctor", "doctors"), "girl": ("girl", "girls"),
          "boy": ("boy", "boys")}
PLACES = ["market", "school", "park", "shop", "garden", "library", "house", "city"]
ADJECTIVES = ["red", "big", "small", "old", "new", "happy", "green", "blue", "good", "little"]
# verbs: lexeme -> (3rd person singular, base form)
VERBS = {"have": ("has", "have"), "buy": ("buys", "buy"), "give": ("gives", "give"), "get": ("gets", "get"),
         "eat": ("eats", "eat"), "lose": ("loses", "lose"), "find": ("finds", "find"), "sell": ("sells", "sell"),
         "share": ("shares", "share"), "see": ("sees", "see"), "read": ("reads", "read"),
         "like": ("likes", "like"), "make": ("makes", "make"), "carry": ("carries", "carry"),
         "want": ("wants", "want"), "visit": ("visits", "visit"), "paint": ("paints", "paint")}
ADVERBS = {"today": "today", "yesterday": "yesterday", "every_day": "every day", "now": "now",
           "equally": "equally", "more": "more", "in_the_morning": "in the morning"}
PREPOSITIONS = ["to", "from", "at", "in", "among", "with"]
FUNCTION_WORDS = ["the", "a", "each", "how_many", "answer", "is", "does", "question"]


def lexemes() -> list[str]:
    """Every lexeme id that needs a word in a synthetic language (stable order: it seeds the vocabulary)."""
    out = [f"name:{n}" for n in NAMES] + [f"noun:{o}" for o in OBJECTS] + [f"noun:{c}" for c in CONTAINERS]
    out += [f"noun:{p}" for p in PEOPLE] + [f"noun:{p}" for p in PLACES] + [f"adj:{a}" for a in ADJECTIVES]
    out += [f"verb:{v}" for v in VERBS] + [f"adv:{a}" for a in ADVERBS] + [f"prep:{p}" for p in PREPOSITIONS]
    out += [f"fn:{w}" for w in FUNCTION_WORDS]
    return out


def _noun_forms(noun: str) -> tuple[str, str]:
    for table in (CONTAINERS, PEOPLE):
        if noun in table:
            return table[noun]
    if noun in OBJECTS:
        return OBJECTS[noun][:2]
    if noun in PLACES:
        return noun, noun + "s"
    raise KeyError(f"unknown noun {noun!r}")


# ----------------------------------------------------------------------------------------------------------
# Sentence structures
# ----------------------------------------------------------------------------------------------------------
@dataclass
class NP:
    """A noun phrase: a name, or [det] [count] [adj] noun. `plural` is implied by count != 1."""

    noun: str  # lexeme (noun id, or a name when proper=True)
    proper: bool = False
    det: str | None = None  # "the", "a", "each" or None
    count: int | None = None
    adj: str | None = None
    plural: bool = False

    @property
    def is_plural(self) -> bool:
        return self.plural or (self.count is not None and self.count != 1)


@dataclass
class Clause:
    """Subject, verb, optional object, adpositional phrases and adverbs; kind="question" asks 'how many'."""

    subj: NP
    verb: str
    obj: NP | None = None
    pps: list[tuple[str, NP]] = field(default_factory=list)
    advs: list[str] = field(default_factory=list)
    question: bool = False  # "How many <obj> does <subj> <verb> [advs]?"


@dataclass
class Equation:
    """`a op b = c [noun]`: identical symbols in every language, only the noun is translated."""

    a: int
    op: str
    b: int
    c: int
    noun: str | None = None


@dataclass
class Answer:
    """"The answer is N.\""""

    value: int


Sentence = Clause | Equation | Answer


# ----------------------------------------------------------------------------------------------------------
# Realisers
# ----------------------------------------------------------------------------------------------------------
def _en_np(np_: NP) -> str:
    if np_.proper:
        return np_.noun
    sing, plur = _noun_forms(np_.noun)
    words = [str(np_.count)] if np_.count is not None else []
    if np_.adj:
        words.append(np_.adj)
    words.append(plur if np_.is_plural else sing)
    if np_.det:
        det = "an" if np_.det == "a" and words[0][0] in "aeiou" else np_.det
        words.insert(0, det)
    return " ".join(words)


def realise_english(s: Sentence) -> str:
    if isinstance(s, Equation):
        tail = f" {_noun_forms(s.noun)[1 if s.c != 1 else 0]}" if s.noun else ""
        return f"{s.a} {s.op} {s.b} = {s.c}{tail}."
    if isinstance(s, Answer):
        return f"The answer is {s.value}."
    advs = [ADVERBS[a] for a in s.advs]
    if s.question:
        noun = _noun_forms(s.obj.noun)[1]
        words = ["How many", noun, "does", _en_np(s.subj), VERBS[s.verb][1], *[f"{p} {_en_np(n)}" for p, n in s.pps], *advs]
        return " ".join(words) + "?"
    words = [_en_np(s.subj), VERBS[s.verb][0]]
    # "more" goes between the count and the noun in English ("buys 3 more apples")
    if s.obj is not None:
        obj = _en_np(s.obj)
        if "more" in s.advs and s.obj.count is not None:
            obj = obj.replace(f"{s.obj.count} ", f"{s.obj.count} more ", 1)
            advs = [a for a in advs if a != "more"]
        words.append(obj)
    words += [f"{p} {_en_np(n)}" for p, n in s.pps]
    words += advs
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


# Scripts: (consonants, vowels). Only spacing letters for Thai so no combining-mark edge cases appear.
SCRIPTS = {
    "Latn": ("ptkbdgmnlrsvzfh", "aeiou"),
    "Cyrl": ("птькбдгмнлрсвзж", "аеиоуя"),
    "Thai": ("กขคงจชดตทนบปพมยรลวสห", "ะาเแโ"),
    "Deva": ("कखगचजटडतदनपबमयरलवसह", "अआइउएओ"),
    "Grek": ("πτκβδγμνλρσζφχ", "αεηιου"),
    "Armn": ("պտկբդգմնլրսվզ", "աեիոու"),
}


@dataclass
class Language:
    """A synthetic language: rules + a generated lexicon (filled by `build_lexicon`)."""

    code: str  # e.g. "qab_Cyrl"
    order: str  # "SVO" | "SOV" | "VSO"
    plural_affix: str
    acc_affix: str  # accusative marker on objects ("" = none)
    affix_is_prefix: bool  # morphology as prefixes (True) or suffixes (False)
    adj_after_noun: bool
    has_articles: bool  # False: "the"/"a" are dropped
    question_particle: bool  # a final question particle ("fn:question") in questions
    lexicon: dict[str, str] = field(default_factory=dict)

    @property
    def script(self) -> str:
        return self.code.split("_")[1]

    # -- noun phrases -----------------------------------------------------------------------------------
    def _affix(self, word: str, affix: str) -> str:
        if not affix:
            return word
        return affix + word if self.affix_is_prefix else word + affix

    def np(self, np_: NP, accusative: bool = False) -> list[str]:
        if np_.proper:
            head = self.lexicon[f"name:{np_.noun}"]
            return [self._affix(head, self.acc_affix) if accusative else head]
        head = self.lexicon[f"noun:{np_.noun}"]
        if np_.is_plural:
            head = self._affix(head, self.plural_affix)
        if accusative:
            head = self._affix(head, self.acc_affix)
        adj = [self.lexicon[f"adj:{np_.adj}"]] if np_.adj else []
        core = [head, *adj] if self.adj_after_noun else [*adj, head]
        det = []
        if np_.det == "each" or (np_.det and self.has_articles):
            det = [self.lexicon[f"fn:{np_.det}"]]
        count = [str(np_.count)] if np_.count is not None else []
        return det + count + core

    def pp(self, prep: str, np_: NP) -> list[str]:
        p = self.lexicon[f"prep:{prep}"]
        # head-final (SOV) languages use postpositions, the others prepositions
        return self.np(np_) + [p] if self.order == "SOV" else [p] + self.np(np_)

    def _order(self, s: list[str], v: list[str], o: list[str], rest: list[str]) -> list[str]:
        if self.order == "SVO":
            return s + v + o + rest
        if self.order == "SOV":
            return s + o + rest + v
        if self.order == "VSO":
            return v + s + o + rest
        raise ValueError(f"unknown word order {self.order!r} for {self.code}")

    def realise(self, sent: Sentence) -> str:
        lx = self.lexicon
        if isinstance(sent, Equation):
            tail = ""
            if sent.noun:
                head = lx[f"noun:{sent.noun}"]
                tail = " " + (self._affix(head, self.plural_affix) if sent.c != 1 else head)
            return f"{sent.a} {sent.op} {sent.b} = {sent.c}{tail}."
        if isinstance(sent, Answer):
            # "answer is N" -> subject, copula as verb, number as complement
            words = self._order([lx["fn:answer"]], [lx["fn:is"]], [str(sent.value)], [])
            return " ".join(words) + "."
        verb = [lx[f"verb:{sent.verb}"]]
        rest = [w for p, n in sent.pps for w in self.pp(p, n)] + [lx[f"adv:{a}"] for a in sent.advs]
        if sent.question:
            # "how-many noun-PL.ACC" is fronted in every synthetic language
            obj = [lx["fn:how_many"], self._affix(self._affix(lx[f"noun:{sent.obj.noun}"], self.plural_affix), self.acc_affix)]
            words = obj + self._order(self.np(sent.subj), verb, [], rest)
            if self.question_particle:
                words.append(lx["fn:question"])
            return " ".join(words) + "?"
        obj = self.np(sent.obj, accusative=True) if sent.obj is not None else []
        return " ".join(self._order(self.np(sent.subj), verb, obj, rest)) + "."


def _make_word(rng: random.Random, script: str) -> str:
    cons, vows = SCRIPTS[script]
    syllables = rng.choice([1, 2, 2, 2, 3])
    out = []
    for _ in range(syllables):
        out.append(rng.choice(cons) + rng.choice(vows))
        if rng.random() < 0.25:
            out.append(rng.choice(cons))
    return "".join(out)


def build_lexicon(lang: Language, seed: int) -> None:
    """One distinct generated word per lexeme, deterministic in (seed, language code)."""
    rng = random.Random(f"{seed}:{lang.code}")
    used: set[str] = set()
    for lex in lexemes():
        word = _make_word(rng, lang.script)
        while word in used or len(word) < 2:
            word = _make_word(rng, lang.script)
        used.add(word)
        lang.lexicon[lex] = word
    # affixes are short syllables of the same script
    lang.plural_affix = rng.choice(SCRIPTS[lang.script][1]) + rng.choice(SCRIPTS[lang.script][0])
    if lang.acc_affix:
        lang.acc_affix = rng.choice(SCRIPTS[lang.script][0]) + rng.choice(SCRIPTS[lang.script][1])


# The world's languages. The last two roles are fixed: qae is unseen by XBridge, qaf is low-resource.
LANGUAGE_SPECS = [
    dict(code="qaa_Latn", order="SVO", acc=False, prefix=False, adj_after=True, articles=True, qpart=False),
    dict(code="qab_Cyrl", order="SOV", acc=True, prefix=False, adj_after=False, articles=False, qpart=True),
    dict(code="qac_Thai", order="VSO", acc=False, prefix=True, adj_after=True, articles=False, qpart=True),
    dict(code="qad_Deva", order="SOV", acc=True, prefix=False, adj_after=False, articles=False, qpart=True),
    dict(code="qae_Grek", order="VSO", acc=True, prefix=False, adj_after=False, articles=True, qpart=False),
    dict(code="qaf_Armn", order="SVO", acc=True, prefix=True, adj_after=True, articles=False, qpart=True),
]
UNSEEN = "qae_Grek"
LOW_RESOURCE = "qaf_Armn"


def make_languages(seed: int = 0, codes: tuple[str, ...] | None = None) -> dict[str, Language]:
    """The world's languages (all of LANGUAGE_SPECS, or those named in `codes`: the unseen and the low-resource
    one must be among them, every table and target refers to them)."""
    known = [spec["code"] for spec in LANGUAGE_SPECS]
    codes = tuple(codes or known)
    bad = [c for c in codes if c not in known]
    if bad or UNSEEN not in codes or LOW_RESOURCE not in codes:
        raise ValueError(f"languages {list(codes)}: each must be one of {known}, and {UNSEEN} and {LOW_RESOURCE} "
                         f"must be among them")
    langs = {}
    for spec in (s for s in LANGUAGE_SPECS if s["code"] in codes):
        lang = Language(code=spec["code"], order=spec["order"], plural_affix="", acc_affix="x" if spec["acc"] else "",
                        affix_is_prefix=spec["prefix"], adj_after_noun=spec["adj_after"],
                        has_articles=spec["articles"], question_particle=spec["qpart"])
        build_lexicon(lang, seed)
        langs[lang.code] = lang
    return langs


# ----------------------------------------------------------------------------------------------------------
# Content generators
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Problem:
    question: list[Sentence]
    reasoning: list[Sentence]  # equations + final Answer
    answer: int
    n_ops: int


def _name_pair(rng: random.Random) -> tuple[NP, NP]:
    a, b = rng.sample(NAMES, 2)
    return NP(a, proper=True), NP(b, proper=True)


MAX_VALUE = 40  # largest value in any problem
MAX_OPERAND = 6  # largest added/subtracted amount


def make_problem(rng: random.Random, n_ops: int | None = None, max_ops: int = 3) -> Problem:
    """A word problem with 1 to `max_ops` (<= 3) arithmetic operations; all intermediate values are positive and
    <= MAX_VALUE.

    Small operands keep the table of arithmetic facts small enough for a tiny LLM trained in minutes. The
    protagonist is the subject of every step ("A gets 3 pens from B", not "B gives 3 pens to A"), so the verb alone
    fixes the sign; the reasoning restates each fact before its equation, so the LLM copies the clause and
    computes locally instead of counting clauses (a 2-layer LLM: 75% before, 99% after; results/miniworld/ANALYSIS.md)."""
    n_ops = n_ops or rng.choice([n for n in (1, 2, 2, 3, 3) if n <= max_ops])
    while True:  # rejection sampling keeps the code simple; values are small so it terminates fast
        problem = _try_problem(rng, n_ops)
        if problem is not None:
            return problem


def _try_problem(rng: random.Random, n_ops: int) -> Problem | None:
    a, b = _name_pair(rng)
    obj = rng.choice(list(OBJECTS))
    edible = OBJECTS[obj][2]
    question: list[Sentence] = []
    reasoning: list[Sentence] = []
    ops_left = n_ops
    # start: either "A has n objs" (no op) or "A has k containers. Each container has m objs." (one op)
    if ops_left >= 2 and rng.random() < 0.3:
        cont = rng.choice(list(CONTAINERS))
        k, m = rng.randint(2, 4), rng.randint(2, 5)
        facts = [Clause(a, "have", NP(cont, count=k)), Clause(NP(cont, det="each"), "have", NP(obj, count=m))]
        question += facts
        value = k * m
        reasoning += facts + [Equation(k, "*", m, value, obj)]
        ops_left -= 1
    else:
        value = rng.randint(2, 15)
        question.append(Clause(a, "have", NP(obj, count=value)))
    share_k = None
    while ops_left > 0:
        last = ops_left == 1
        kind = rng.choice(["add", "sub", "sub", "share"] if last else ["add", "sub", "mul"])
        if kind == "mul" and ops_left < 2:
            kind = "add"
        if kind == "add":
            m = rng.randint(1, MAX_OPERAND)
            clause = rng.choice([Clause(a, "buy", NP(obj, count=m), advs=["more"]),
                                 Clause(a, "get", NP(obj, count=m), pps=[("from", b)]),
                                 Clause(a, "find", NP(obj, count=m))])
            question.append(clause)
            reasoning += [clause, Equation(value, "+", m, value + m, obj)]
            value += m
        elif kind == "sub":
            m = rng.randint(1, MAX_OPERAND)
            if m >= value:
                return None
            verbs = ["give", "sell", "lose"] + (["eat"] if edible else [])
            verb = rng.choice(verbs)
            pps = [("to", b)] if verb == "give" else []
            clause = Clause(a, verb, NP(obj, count=m), pps=pps)
            question.append(clause)
            reasoning += [clause, Equation(value, "-", m, value - m, obj)]
            value -= m
        elif kind == "mul":  # "A gets k containers from B. Each container has m objs." -> two ops
            cont = rng.choice(list(CONTAINERS))
            k, m = rng.randint(2, 4), rng.randint(2, 5)
            facts = [Clause(a, "get", NP(cont, count=k), pps=[("from", b)]),
                     Clause(NP(cont, det="each"), "have", NP(obj, count=m))]
            question += facts
            reasoning += facts + [Equation(k, "*", m, k * m, obj), Equation(value, "+", k * m, value + k * m, obj)]
            value += k * m
            ops_left -= 1
        else:  # share among k friends, exact division only
            divisors = [k for k in range(2, 6) if value % k == 0 and value // k >= 1]
            if not divisors:
                return None
            share_k = rng.choice(divisors)
            clause = Clause(a, "share", NP(obj, det="the", plural=True), pps=[("among", NP("friend", count=share_k))],
                            advs=["equally"])
            question.append(clause)
            reasoning += [clause, Equation(value, "/", share_k, value // share_k, obj)]
            value //= share_k
        ops_left -= 1
        if value > MAX_VALUE:
            return None
    if share_k is not None:
        question.append(Clause(NP("friend", det="each"), "get", NP(obj), question=True))
    else:
        question.append(Clause(a, "have", NP(obj), advs=["now"], question=True))
    reasoning.append(Answer(value))
    return Problem(question, reasoning, value, n_ops)


GENERAL_VERBS = ["buy", "see", "read", "like", "make", "carry", "want", "paint", "find", "sell", "eat", "visit", "give"]


def make_general_sentence(rng: random.Random, subj: NP | None = None, verb: str | None = None) -> Clause:
    """A general English sentence for translation (not a problem): varied subjects, objects, places, times.
    `subj` / `verb` fix the subject or the verb (a story's protagonist and events)."""
    if subj is None:
        if rng.random() < 0.4:
            subj = NP(rng.choice(NAMES), proper=True)
        else:
            subj = NP(rng.choice(list(PEOPLE)), det="the", adj=rng.choice([None, *ADJECTIVES]))
    verb = verb or rng.choice(GENERAL_VERBS)
    if verb == "visit":
        obj = NP(rng.choice(PLACES), det="the", adj=rng.choice([None, *ADJECTIVES]))
    else:
        noun = "book" if verb == "read" else rng.choice([o for o in OBJECTS if OBJECTS[o][2]] if verb == "eat" else list(OBJECTS))
        count = rng.choice([None, None, rng.randint(2, 12)])
        obj = NP(noun, det=None if count else rng.choice(["the", "a"]), count=count, adj=rng.choice([None, None, *ADJECTIVES]))
    pps = []
    if verb == "give":
        other = NP(rng.choice(NAMES), proper=True) if rng.random() < 0.5 else NP(rng.choice(list(PEOPLE)), det="the")
        pps.append(("to", other))
    elif rng.random() < 0.5 and verb != "visit":
        pps.append((rng.choice(["at", "in"]), NP(rng.choice(PLACES), det="the")))
    if rng.random() < 0.3:
        others = [n for n in NAMES if n != subj.noun and all(n != p[1].noun for p in pps)]
        pps.append(("with", NP(rng.choice(others), proper=True)))
    advs = [rng.choice(["today", "yesterday", "every_day", "in_the_morning"])] if rng.random() < 0.4 else []
    return Clause(subj, verb, obj, pps, advs)


@dataclass
class Story:
    """A short story about one person (the first sentence's subject) among others' doings, and its summary: that
    person's events in story order, each cut to its core (no adjectives, places, company or times)."""

    sentences: list[Clause]
    summary: list[Clause]


def _gist(clause: Clause) -> Clause:
    obj = None if clause.obj is None else NP(clause.obj.noun, det=clause.obj.det, count=clause.obj.count)
    return Clause(clause.subj, clause.verb, obj, [(p, n) for p, n in clause.pps if p == "to"])


def make_story(rng: random.Random) -> Story:
    """2-5 sentences: 1-2 events of the protagonist (the first sentence is one) and 1-3 of other people, the rest
    shuffled; the summary is 1-2 sentences (the XL-Sum task's shape, in the world's grammar)."""
    hero = NP(rng.choice(NAMES), proper=True)
    events = [make_general_sentence(rng, subj=hero, verb=v) for v in rng.sample(GENERAL_VERBS, rng.choice([1, 2, 2]))]
    others = []
    for _ in range(rng.choice([1, 2, 2, 3])):
        sentence = make_general_sentence(rng)
        while sentence.subj.noun == hero.noun:
            sentence = make_general_sentence(rng)
        others.append(sentence)
    rest = events[1:] + others
    rng.shuffle(rest)
    return Story([events[0], *rest], [_gist(e) for e in events])  # events[0] opens the story: summary in story order


# ----------------------------------------------------------------------------------------------------------
# World: sizes, splits, files
# ----------------------------------------------------------------------------------------------------------
@dataclass
class WorldConfig:
    seed: int = 0
    n_llm_problems: int = 20000  # English-only LLM pretraining
    n_nmt_items: int = 6000  # English items translated into every language for NMT pretraining
    n_stage1: int = 1500  # trilingual records per seen language
    n_task: int = 1200  # stage 2-3 task records per seen language
    n_test_problems: int = 100  # held-out problems per language
    n_test_sentences: int = 100  # held-out parallel sentences per language
    low_resource_fraction: float = 0.1  # share of translation/task data the low-resource language gets
    max_ops: int = 3  # operations per problem: 1..max_ops
    languages: tuple[str, ...] | None = None  # None: all of LANGUAGE_SPECS
    # the general world (general/: a general English LLM, stories and their summaries; see `build_general`)
    n_llm_general: int = 60000  # English LLM records: math and summaries as instructions, stories as plain text
    n_nmt_stories: int = 1500  # stories (and their summaries) translated into every language for the NMT
    n_test_stories: int = 100  # held-out stories per language
    # English documents that repeat a passage ("<text>\n<text>"), added to the LLM's records; a real LLM's web text
    # is full of repeated spans and that is where it learns to copy from its context (induction heads). Without
    # them this LLM could not copy at all (the exact sentence before it did not lower its loss on it: ANALYSIS.md
    # section 5), and stage 1 - write the English of what precedes the boundary - needs that ability.
    repeat_fraction: float = 0.1

    def __post_init__(self):
        if self.max_ops not in (1, 2, 3):
            raise ValueError(f"max_ops={self.max_ops!r}: problems have 1, 2 or 3 operations")

    @classmethod
    def fast(cls) -> WorldConfig:
        """The small world of `bases --fast` (miniworld/configs/fast.yaml)."""
        from . import experiments  # noqa: PLC0415  (world.py is imported by the Space and the tests standalone)

        return experiments.section("fast", "world", cls=cls)


def _text(sents: list[Sentence], realise) -> str:
    return " ".join(realise(s) for s in sents)


class World:
    """Holds the languages and realises any structure in any language (English included)."""

    def __init__(self, config: WorldConfig):
        self.config = config
        self.languages = make_languages(config.seed, config.languages)

    @property
    def codes(self) -> list[str]:
        return list(self.languages)

    @property
    def seen(self) -> list[str]:
        """Synthetic languages used in the XBridge stages (all but the unseen one)."""
        return [c for c in self.languages if c != UNSEEN]

    def realise(self, sents: list[Sentence], lang: str) -> str:
        if lang == ENGLISH:
            return _text(sents, realise_english)
        if lang not in self.languages:
            raise ValueError(f"unknown language {lang!r}; the world has {[ENGLISH, *self.languages]}")
        return _text(sents, self.languages[lang].realise)

    def share(self, lang: str) -> float:
        return self.config.low_resource_fraction if lang == LOW_RESOURCE else 1.0


def trilingual_record(world: World, rng: random.Random, item: list[Sentence], src: str, langs: list[str]) -> dict:
    """A stage-1 record (x, its English, y): y = x half of the time, else any of `langs`; the low-resource language
    is a target only its data share of the time."""
    tgt = src if rng.random() < 0.5 else rng.choice(langs)
    if tgt == LOW_RESOURCE and rng.random() > world.config.low_resource_fraction:
        tgt = src
    return dict(src_text=world.realise(item, src), src_lang=src, en_text=world.realise(item, ENGLISH),
                tgt_text=world.realise(item, tgt), tgt_lang=tgt)


def translation_pairs(world: World, items: list[tuple[int, list[Sentence]]]) -> list[dict]:
    """Translation pairs of each (index, item) between English and every language, both directions; the
    low-resource language gets only every 1/fraction-th item (by its index)."""
    rows, every = [], round(1 / world.config.low_resource_fraction)
    for i, item in items:
        en = world.realise(item, ENGLISH)
        for code in world.codes:
            if code == LOW_RESOURCE and i % every != 0:
                continue
            x = world.realise(item, code)
            rows += [dict(src_text=x, src_lang=code, tgt_text=en, tgt_lang=ENGLISH),
                     dict(src_text=en, src_lang=ENGLISH, tgt_text=x, tgt_lang=code)]
    return rows


def generate(out: str | Path, config: WorldConfig | None = None) -> dict:
    """Write the whole world (`build`) under `out`; returns its summary (also written as `world.json`)."""
    files, summary = build(config or WorldConfig())
    out = Path(out)
    for name, content in files.items():
        if isinstance(content, str):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(content, encoding="utf-8")
        else:
            write_jsonl(out / name, content)
    return summary


def build(config: WorldConfig) -> tuple[dict[str, list[dict] | str], dict]:
    """Every file of the world, {path: JSONL rows or text}, and its summary; nothing is written.

    Layout:
      llm_pretrain.jsonl            {prompt, completion, answer}       English only
      nmt_pretrain.jsonl            {src_text, src_lang, tgt_text, tgt_lang}   x<->eng both directions
      stage1.jsonl                  {src_text, src_lang, en_text, tgt_text, tgt_lang}   seen languages only
      task.jsonl                    {question, src_lang, answer_en, answer_tgt, tgt_lang} seen languages only
      test/problems.jsonl           {id, lang, question, answer, answer_en, answer_tgt}   every language + eng
      test/mgsm/mgsm_<short>.tsv    question<TAB>answer (MGSM layout, line i = same problem in every language)
      test/flores/<code>.devtest    one sentence per line (FLORES layout, line-aligned across languages)
    """
    world = World(config)
    rng = random.Random(config.seed)

    # Held-out test problems/sentences first, then training data that never repeats their English text.
    test_problems, seen_q = [], set()
    while len(test_problems) < config.n_test_problems:
        # balanced over 1..max_ops operations
        p = make_problem(rng, n_ops=1 + len(test_problems) % config.max_ops)
        key = world.realise(p.question, ENGLISH)
        if key not in seen_q:
            seen_q.add(key)
            test_problems.append(p)
    test_sents, seen_s = [], set()
    while len(test_sents) < config.n_test_sentences:
        s = make_general_sentence(rng)
        key = realise_english(s)
        if key not in seen_s:
            seen_s.add(key)
            test_sents.append(s)

    def fresh_problem() -> Problem:
        while True:
            p = make_problem(rng, max_ops=config.max_ops)
            if world.realise(p.question, ENGLISH) not in seen_q:
                return p

    def fresh_sentence() -> Clause:
        while True:
            s = make_general_sentence(rng)
            if realise_english(s) not in seen_s:
                return s

    # LLM pretraining: English problems -> reasoning.
    llm_rows = []
    for _ in range(config.n_llm_problems):
        p = fresh_problem()
        question = world.realise(p.question, ENGLISH)
        if rng.random() < 0.25:
            question = rng.choice(INSTRUCTION_VARIANTS) + " " + question
        llm_rows.append(dict(prompt=LLM_PROMPT.format(question=question),
                             completion=" " + world.realise(p.reasoning, ENGLISH), answer=p.answer))

    # NMT pretraining items: general sentences, single problem/reasoning sentences, whole questions and answers.
    items: list[list[Sentence]] = []
    while len(items) < config.n_nmt_items:
        r = rng.random()
        if r < 0.4:
            items.append([fresh_sentence()])
        else:
            p = fresh_problem()
            if r < 0.6:
                items.append(p.question)
            elif r < 0.75:
                items.append(p.reasoning)
            else:
                sents = p.question + p.reasoning
                i = rng.randrange(len(sents))
                items.append(sents[i:i + rng.choice([1, 1, 2])])
    nmt_rows = translation_pairs(world, list(enumerate(items)))
    rng.shuffle(nmt_rows)

    # Stage 1: (x, en, y) with x and y among the seen languages and English; y = x half of the time.
    # The English side is text the LLM can write: its reasoning (facts restated, equations, answers). It never
    # learned to write general sentences (its loss was on the reasoning only), so with those as targets stage 1's
    # CE_llm stayed at ~2.7 and taught the encoder map little (measured: results/miniworld/ANALYSIS.md).
    trilingual_langs = [ENGLISH, *world.seen]
    stage1_rows = []
    for src in world.seen + [ENGLISH]:
        n = int(config.n_stage1 * world.share(src))
        for _ in range(n):
            stage1_rows.append(trilingual_record(world, rng, fresh_problem().reasoning, src, trilingual_langs))
    rng.shuffle(stage1_rows)

    # Stages 2-3: question in x, English reasoning, reasoning in x (answers in the question's language).
    task_rows = []
    for src in world.seen + [ENGLISH]:
        for _ in range(int(config.n_task * world.share(src))):
            p = fresh_problem()
            task_rows.append(dict(question=world.realise(p.question, src), src_lang=src,
                                  answer_en=world.realise(p.reasoning, ENGLISH),
                                  answer_tgt=world.realise(p.reasoning, src), tgt_lang=src, answer=p.answer))
    rng.shuffle(task_rows)

    # Held-out test sets in every language (English too).
    test_rows, files = [], {}
    for code in [ENGLISH, *world.codes]:
        for i, p in enumerate(test_problems):
            test_rows.append(dict(id=i, lang=code, question=world.realise(p.question, code), answer=p.answer,
                                  n_ops=p.n_ops, answer_en=world.realise(p.reasoning, ENGLISH),
                                  answer_tgt=world.realise(p.reasoning, code)))
        files[f"test/mgsm/mgsm_{short_code(code)}.tsv"] = "".join(
            f"{world.realise(p.question, code)}\t{p.answer}\n" for p in test_problems)
        files[f"test/flores/{code}.devtest"] = "".join(world.realise([s], code) + "\n" for s in test_sents)

    general = build_general(world, seen_q, seen_s)
    general_counts = {name: len(rows) for name, rows in general.items() if not name.startswith("test/xlsum/")}
    files.update(general)
    files.update({"llm_pretrain.jsonl": llm_rows, "nmt_pretrain.jsonl": nmt_rows, "stage1.jsonl": stage1_rows,
                  "task.jsonl": task_rows, "test/problems.jsonl": test_rows})
    summary = dict(
        config=config.__dict__, english=ENGLISH, languages={c: dict(order=l.order, script=l.script) for c, l in world.languages.items()},
        unseen=UNSEEN, low_resource=LOW_RESOURCE, seen=world.seen,
        counts=dict(llm_pretrain=len(llm_rows), nmt_pretrain=len(nmt_rows), stage1=len(stage1_rows), task=len(task_rows),
                    test_problems=len(test_problems), test_sentences=len(test_sents), general=general_counts),
        examples={c: dict(question=world.realise(test_problems[0].question, c), answer=world.realise(test_problems[0].reasoning, c),
                          sentence=world.realise([test_sents[0]], c)) for c in [ENGLISH, *world.codes]},
    )
    files["world.json"] = json.dumps(summary, ensure_ascii=False, indent=1)
    return files, summary


# ----------------------------------------------------------------------------------------------------------
# The general world: a general English LLM, stories and summaries (issue 13)
# ----------------------------------------------------------------------------------------------------------
# The harness's task instructions (eval/systems.py INSTRUCTIONS; a test keeps them equal): the general LLM is
# instruction-tuned on exactly these lines, so the harness prompts it as it prompts a real instruct LLM.
MATH_INSTRUCTION = 'Solve the following math problem step by step. End with "The answer is N".'
SUMMARY_INSTRUCTION = "Summarize the following article in one or two sentences."
TASK_INSTRUCTIONS = {"math": MATH_INSTRUCTION, "summarize": SUMMARY_INSTRUCTION}
STEP_BY_STEP = "Let's think step by step."  # how the general LLM opens a math answer (English only)


def xlsum_name(code: str) -> str:
    """The world's XL-Sum file name of a language: XL-Sum's own for English, the short code otherwise."""
    return "english" if code == ENGLISH else short_code(code)


def _with_repeats(llm_rows: list[dict], world: World, test_sentences: set[str], test_stories: set[str]) -> list[dict]:
    """`llm_rows` plus `repeat_fraction` of them again as repeated-passage documents (1-3 sentences of a fresh
    story, or a general sentence, then the same again), each at a random place. Its own random stream: the other
    general files do not move."""
    config = world.config
    rng = random.Random(f"{config.seed}:general-repeat")
    rows = list(llm_rows)
    for _ in range(round(config.repeat_fraction * len(llm_rows))):
        while True:
            if rng.random() < 0.5:
                story = make_story(rng)
                if world.realise(story.sentences, ENGLISH) in test_stories:
                    continue
                start = rng.randrange(len(story.sentences))
                item = story.sentences[start:start + rng.choice([1, 2, 3])]
            else:
                item = [make_general_sentence(rng)]
            if not any(realise_english(c) in test_sentences for c in item):
                break
        passage = world.realise(item, ENGLISH)
        rows.insert(rng.randrange(len(rows) + 1), dict(text=f"{passage}\n{passage}"))
    return rows


def build_general(world: World, test_questions: set[str], test_sentences: set[str]) -> dict[str, list[dict]]:
    """The files of `general/` and the held-out stories, {path: rows}, never repeating a test problem, sentence or
    story. Its own random stream, so the files of the first world (above) stay byte for byte what they were.

      general/llm.jsonl     English only: {text} (stories and repeated passages, loss on all of it) or
                            {instruction, input, output, task}
      general/nmt.jsonl     stories and summaries, x<->eng both directions (added to nmt_pretrain.jsonl)
      general/stage1.jsonl  trilingual records of general sentences and story sentences, seen languages
      general/task.jsonl    math and summary task records with their `instruction`, seen languages
      test/stories.jsonl    {id, lang, story, summary, summary_en}, every language + eng
      test/xlsum/<name>_test.jsonl    XL-Sum's layout {id, url, title, summary, text} (`xlsum_name`)
    """
    config, rng = world.config, random.Random(f"{world.config.seed}:general")
    test_stories, seen_t = [], set()
    while len(test_stories) < config.n_test_stories:
        story = make_story(rng)
        key = world.realise(story.sentences, ENGLISH)
        if key not in seen_t and not any(realise_english(c) in test_sentences for c in story.sentences):
            seen_t.add(key)
            test_stories.append(story)

    def fresh_story() -> Story:
        while True:
            story = make_story(rng)
            if world.realise(story.sentences, ENGLISH) not in seen_t and not any(
                    realise_english(c) in test_sentences for c in story.sentences):
                return story

    def fresh_problem() -> Problem:
        while True:
            p = make_problem(rng, max_ops=config.max_ops)
            if world.realise(p.question, ENGLISH) not in test_questions:
                return p

    def math_answer(p: Problem, lang: str) -> str:
        reasoning = world.realise(p.reasoning, lang)
        return f"{STEP_BY_STEP} {reasoning}" if lang == ENGLISH else reasoning

    def instruction(task: str) -> str:
        # the harness's direct baseline appends "Respond in <language>." (eval/systems.py): a share of the training
        # instructions carry the English one, as an instruction-tuned LLM has seen such lines
        return TASK_INSTRUCTIONS[task] + (" Respond in English." if rng.random() < 0.2 else "")

    llm_rows = []
    for _ in range(config.n_llm_general):
        r = rng.random()
        if r < 0.6:
            p = fresh_problem()
            llm_rows.append(dict(task="math", instruction=instruction("math"), input=world.realise(p.question, ENGLISH),
                                 output=math_answer(p, ENGLISH)))
        elif r < 0.88:
            story = fresh_story()
            llm_rows.append(dict(task="summarize", instruction=instruction("summarize"),
                                 input=world.realise(story.sentences, ENGLISH), output=world.realise(story.summary, ENGLISH)))
        else:
            llm_rows.append(dict(text=world.realise(fresh_story().sentences, ENGLISH)))
    llm_rows = _with_repeats(llm_rows, world, test_sentences, seen_t)

    stories = [fresh_story() for _ in range(config.n_nmt_stories)]
    nmt_rows = translation_pairs(world, [(i, item) for i, story in enumerate(stories) for item in (story.sentences, story.summary)])
    rng.shuffle(nmt_rows)

    # Stage 1 (the paper's translation data): general sentences and story sentences, y = x half of the time
    stage1_rows, trilingual = [], [ENGLISH, *world.seen]
    for src in world.seen + [ENGLISH]:
        for _ in range(int(config.n_stage1 * world.share(src))):
            if rng.random() < 0.5:
                item = fresh_story().sentences
                item = item[rng.randrange(len(item)):][:rng.choice([1, 2])]
            else:
                item = [make_general_sentence(rng)]
                while realise_english(item[0]) in test_sentences:
                    item = [make_general_sentence(rng)]
            stage1_rows.append(trilingual_record(world, rng, item, src, trilingual))
    rng.shuffle(stage1_rows)

    # Stages 2-3: both tasks, the question's language in and out (the paper's MetaMath / XL-Sum task data)
    task_rows = []
    for src in world.seen + [ENGLISH]:
        for _ in range(int(config.n_task * world.share(src))):
            if rng.random() < 0.5:
                p = fresh_problem()
                task_rows.append(dict(task="math", instruction=MATH_INSTRUCTION, question=world.realise(p.question, src),
                                      src_lang=src, answer_en=math_answer(p, ENGLISH), answer_tgt=math_answer(p, src),
                                      tgt_lang=src, answer=p.answer))
            else:
                story = fresh_story()
                task_rows.append(dict(task="summarize", instruction=SUMMARY_INSTRUCTION,
                                      question=world.realise(story.sentences, src), src_lang=src,
                                      answer_en=world.realise(story.summary, ENGLISH),
                                      answer_tgt=world.realise(story.summary, src), tgt_lang=src))
    rng.shuffle(task_rows)

    test_rows, files = [], {}
    for code in [ENGLISH, *world.codes]:
        rows = [dict(id=i, lang=code, story=world.realise(s.sentences, code), summary=world.realise(s.summary, code),
                     summary_en=world.realise(s.summary, ENGLISH)) for i, s in enumerate(test_stories)]
        test_rows += rows
        files[f"test/xlsum/{xlsum_name(code)}_test.jsonl"] = [dict(id=str(r["id"]), url="", title="",
                                                                   summary=r["summary"], text=r["story"]) for r in rows]
    return {**files, "general/llm.jsonl": llm_rows, "general/nmt.jsonl": nmt_rows, "general/stage1.jsonl": stage1_rows,
            "general/task.jsonl": task_rows, "test/stories.jsonl": test_rows}
