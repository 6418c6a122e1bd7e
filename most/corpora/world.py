"""A deterministic fictional world: entities, facts about them, and the sentences that state them.

The embedded default needs text the base LM can learn *and* knowledge the speech model can only
have learnt from text (the cross-modal transfer test). Invented names guarantee that no fact is
guessable from English; a seed makes the whole world reproducible bit for bit.

Entities: countries, cities, people, animals, objects. Each relation below links a subject to one
answer; every relation has several statement templates (varied corpus) and question templates
(spoken QA). Numbers are spelled out so speech and text agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from most.corpora.numbers import number_words

ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "kr",
    "tr",
    "st",
    "sh",
]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o"]
CODAS = ["", "", "", "n", "r", "l", "s", "k", "m"]

PROFESSIONS = [
    "baker",
    "farmer",
    "sailor",
    "teacher",
    "painter",
    "doctor",
    "miner",
    "weaver",
    "potter",
    "singer",
    "builder",
    "hunter",
    "fisher",
    "tailor",
    "poet",
    "judge",
]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "orange", "purple", "grey", "brown"]
MATERIALS = ["wood", "stone", "iron", "glass", "copper", "silver", "clay", "bone"]
FOODS = ["grass", "fish", "berries", "seeds", "leaves", "insects", "roots", "honey"]
HABITATS = ["forests", "mountains", "rivers", "deserts", "swamps", "caves", "islands", "meadows"]
OBJECT_KINDS = [
    "lamp",
    "drum",
    "bell",
    "clock",
    "harp",
    "compass",
    "kettle",
    "mirror",
    "loom",
    "flute",
    "wheel",
    "cart",
]
ANIMAL_KINDS = ["bird", "fox", "cat", "lizard", "horse", "beetle", "owl", "frog", "deer", "goat"]
#: The real words facts are built from; the sWUGGY-style minimal pairs are drawn from them
#: (eval/audio_lm.py), so training data that is about words alone leaves them out.
CLASS_WORDS = (
    *COLORS, *MATERIALS, *FOODS, *HABITATS, *ANIMAL_KINDS, *OBJECT_KINDS, *PROFESSIONS
)  # fmt: skip


@dataclass(frozen=True)
class WorldConfig:
    """Size and seed of the generated world.

    Args:
        seed: generator seed; the same seed gives the same world, sentences and splits.
        n_countries: number of countries (4 facts each).
        n_cities: number of cities (3 facts each).
        n_people: number of people (6 facts each).
        n_animals: number of animal species (3 facts each).
        n_objects: number of objects (3 facts each).
        corpus_words: size of the text-LM corpus in words.
        heldout_fraction: share of facts held out of QA training (the transfer test).
    """

    seed: int = 1234
    n_countries: int = 40
    n_cities: int = 120
    n_people: int = 350
    n_animals: int = 50
    n_objects: int = 80
    corpus_words: int = 2_000_000
    heldout_fraction: float = 0.08

    def __post_init__(self) -> None:
        for name in ("n_countries", "n_cities", "n_people", "n_animals", "n_objects"):
            if getattr(self, name) < 2:
                raise ValueError(f"world.{name} must be >= 2, got {getattr(self, name)}")
        if self.n_cities < self.n_countries:
            raise ValueError("world.n_cities must be >= world.n_countries (each has a capital)")
        if not 0.0 < self.heldout_fraction < 0.5:
            raise ValueError(
                f"world.heldout_fraction must be in (0, 0.5), got {self.heldout_fraction}"
            )
        if self.corpus_words < 1000:
            raise ValueError(f"world.corpus_words must be >= 1000, got {self.corpus_words}")


@dataclass(frozen=True)
class Relation:
    statements: tuple[str, ...]  # templates with {s} subject and {o} answer
    questions: tuple[str, ...]  # templates with {s}


RELATIONS: dict[str, Relation] = {
    "capital": Relation(
        (
            "The capital of {s} is {o}.",
            "{o} is the capital of {s}.",
            "In {s}, the capital city is {o}.",
        ),
        ("What is the capital of {s}?", "Which city is the capital of {s}?"),
    ),
    "language": Relation(
        ("People in {s} speak {o}.", "The language of {s} is {o}.", "In {s} everyone speaks {o}."),
        ("What language do people speak in {s}?", "What is the language of {s}?"),
    ),
    "national_animal": Relation(
        ("The national animal of {s} is the {o}.", "{s} chose the {o} as its national animal."),
        ("What is the national animal of {s}?",),
    ),
    "population": Relation(
        ("{s} has {o} thousand people.", "About {o} thousand people live in {s}."),
        ("How many thousand people live in {s}?",),
    ),
    "country": Relation(
        ("{s} is a city in {o}.", "The city of {s} lies in {o}.", "{s} is found in {o}."),
        ("In which country is {s}?", "Which country is {s} in?"),
    ),
    "river": Relation(
        ("The river {o} flows through {s}.", "{s} stands on the river {o}."),
        ("Which river flows through {s}?",),
    ),
    "founded": Relation(
        ("{s} was founded in the year {o}.", "The city of {s} was built in the year {o}."),
        ("In which year was {s} founded?",),
    ),
    "lives_in": Relation(
        ("{s} lives in {o}.", "{s} has a home in {o}.", "The home of {s} is in {o}."),
        ("Where does {s} live?", "In which city does {s} live?"),
    ),
    "profession": Relation(
        ("{s} works as a {o}.", "{s} is a {o}.", "By trade, {s} is a {o}."),
        ("What does {s} do for a living?", "What is the job of {s}?"),
    ),
    "age": Relation(
        ("{s} is {o} years old.", "The age of {s} is {o}."),
        ("How old is {s}?",),
    ),
    "pet": Relation(
        ("{s} keeps a {o} as a pet.", "The pet of {s} is a {o}."),
        ("What pet does {s} keep?", "Which animal does {s} keep as a pet?"),
    ),
    "owns": Relation(
        ("{s} owns the {o}.", "The {o} belongs to {s}."),
        ("Which object does {s} own?",),
    ),
    "friend": Relation(
        ("{s} is a close friend of {o}.", "The best friend of {s} is {o}."),
        ("Who is the best friend of {s}?",),
    ),
    "color": Relation(
        ("The {s} is {o}.", "The color of the {s} is {o}.", "Every {s} is {o}."),
        ("What color is the {s}?",),
    ),
    "eats": Relation(
        ("The {s} eats {o}.", "The food of the {s} is {o}."),
        ("What does the {s} eat?",),
    ),
    "habitat": Relation(
        ("The {s} lives in the {o}.", "You can find the {s} in the {o}."),
        ("Where does the {s} live?",),
    ),
    "material": Relation(
        ("The {s} is made of {o}.", "Someone made the {s} out of {o}."),
        ("What is the {s} made of?",),
    ),
    "inventor": Relation(
        ("The {s} was made by {o}.", "{o} built the {s}."),
        ("Who made the {s}?",),
    ),
}


@dataclass(frozen=True)
class Fact:
    id: str
    relation: str
    subject: str
    answer: str

    def statement(self, rng: random.Random) -> str:
        template = rng.choice(RELATIONS[self.relation].statements)
        return _capitalise(template.format(s=self.subject, o=self.answer))

    def answer_sentence(self) -> str:
        """The fact stated subject first, answer after it (the first such template): how spoken and
        text QA answer in training, so that an answer is the continuation of a statement the text
        LM learnt, started from the question's subject ("The capital of Velmora is Tarsk.")."""
        template = next(
            t for t in RELATIONS[self.relation].statements if t.index("{s}") < t.index("{o}")
        )
        return _capitalise(template.format(s=self.subject, o=self.answer))

    def question(self, rng: random.Random) -> str:
        template = rng.choice(RELATIONS[self.relation].questions)
        return _capitalise(template.format(s=self.subject))


@dataclass(frozen=True)
class World:
    config: WorldConfig
    entities: dict[str, list[str]]  # kind -> names
    facts: list[Fact]

    def facts_about(self) -> dict[str, list[Fact]]:
        by_subject: dict[str, list[Fact]] = {}
        for fact in self.facts:
            by_subject.setdefault(fact.subject, []).append(fact)
        return by_subject


def _capitalise(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def _names(rng: random.Random, n: int, syllables: tuple[int, int], taken: set[str]) -> list[str]:
    """``n`` new pronounceable invented names, unique across the whole world."""
    names: list[str] = []
    while len(names) < n:
        k = rng.randint(*syllables)
        parts = [rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(k)]
        name = ("".join(parts) + rng.choice(CODAS)).capitalize()
        if name not in taken and len(name) >= 4:
            taken.add(name)
            names.append(name)
    return names


def build_world(config: WorldConfig) -> World:
    """Generate entities and facts; the result depends only on ``config``."""
    rng = random.Random(config.seed)
    taken: set[str] = set()
    countries = _names(rng, config.n_countries, (2, 3), taken)
    cities = _names(rng, config.n_cities, (1, 2), taken)
    rivers = _names(rng, config.n_cities // 3 + 1, (2, 2), taken)
    languages = [n + "ish" for n in _names(rng, config.n_countries, (1, 2), taken)]
    first = _names(rng, max(20, config.n_people // 4), (1, 2), taken)
    last = _names(rng, max(20, config.n_people // 3), (2, 2), taken)
    people: list[str] = []
    while len(people) < config.n_people:
        full = f"{rng.choice(first)} {rng.choice(last)}"
        if full not in people:
            people.append(full)
    # Animals and objects are "kind + invented name" so their names stay pronounceable nouns.
    animals = [
        f"{n.lower()} {rng.choice(ANIMAL_KINDS)}"
        for n in _names(rng, config.n_animals, (1, 2), taken)
    ]
    objects = [
        f"{n.lower()} {rng.choice(OBJECT_KINDS)}"
        for n in _names(rng, config.n_objects, (1, 2), taken)
    ]

    facts: list[Fact] = []

    def add(relation: str, subject: str, answer: str) -> None:
        facts.append(Fact(f"f{len(facts):05d}", relation, subject, answer))

    city_country = {c: countries[i % len(countries)] for i, c in enumerate(cities)}
    for i, country in enumerate(countries):
        add("capital", country, cities[i])  # city i lies in country i by construction
        add("language", country, languages[i])
        add("national_animal", country, rng.choice(animals))
        add("population", country, number_words(rng.randint(20, 990)))
    for city in cities:
        add("country", city, city_country[city])
        add("river", city, rng.choice(rivers))
        add("founded", city, number_words(rng.randint(1100, 1950)))
    for person in people:
        add("lives_in", person, rng.choice(cities))
        add("profession", person, rng.choice(PROFESSIONS))
        add("age", person, number_words(rng.randint(18, 95)))
        add("pet", person, rng.choice(animals))
        add("owns", person, rng.choice(objects))
        add("friend", person, rng.choice([p for p in rng.sample(people, 3) if p != person]))
    for animal in animals:
        add("color", animal, rng.choice(COLORS))
        add("eats", animal, rng.choice(FOODS))
        add("habitat", animal, rng.choice(HABITATS))
    for obj in objects:
        add("material", obj, rng.choice(MATERIALS))
        add("color", obj, rng.choice(COLORS))
        add("inventor", obj, rng.choice(people))
    entities = {
        "country": countries,
        "city": cities,
        "person": people,
        "animal": animals,
        "object": objects,
        "river": rivers,
        "language": languages,
    }
    return World(config, entities, facts)


def invented_names(world: World) -> set[str]:
    """Every invented name of ``world`` as the generator drew it (capitalised, one word each):
    first and last names, places, rivers, language stems, animal and object names."""
    kinds = {k.lower() for k in (*ANIMAL_KINDS, *OBJECT_KINDS)}
    names = set()
    for kind, entities in world.entities.items():
        for entity in entities:
            stem = entity.removesuffix("ish") if kind == "language" else entity
            names.update(w.capitalize() for w in stem.split() if w.lower() not in kinds)
    return names


def split_facts(world: World) -> tuple[list[Fact], list[Fact]]:
    """Partition facts into (qa_train, qa_heldout) by fact, stratified by relation."""
    rng = random.Random(world.config.seed + 1)
    by_relation: dict[str, list[Fact]] = {}
    for fact in world.facts:
        by_relation.setdefault(fact.relation, []).append(fact)
    train: list[Fact] = []
    heldout: list[Fact] = []
    for relation in sorted(by_relation):
        group = list(by_relation[relation])
        rng.shuffle(group)
        k = max(1, round(len(group) * world.config.heldout_fraction))
        heldout.extend(group[:k])
        train.extend(group[k:])
    return sorted(train, key=lambda f: f.id), sorted(heldout, key=lambda f: f.id)


def text_corpus(world: World, n_words: int, seed: int) -> list[str]:
    """Paragraphs about one subject each, every fact stated in a random template.

    Every fact (held-out ones included) appears many times in varied wording: the base LM must
    learn the world from this text alone.
    """
    rng = random.Random(seed)
    by_subject = world.facts_about()
    subjects = sorted(by_subject)
    paragraphs: list[str] = []
    words = 0
    while words < n_words:
        rng.shuffle(subjects)
        for subject in subjects:
            facts = list(by_subject[subject])
            rng.shuffle(facts)
            paragraph = " ".join(f.statement(rng) for f in facts)
            paragraphs.append(paragraph)
            words += paragraph.count(" ") + 1
            if words >= n_words:
                break
    return paragraphs
