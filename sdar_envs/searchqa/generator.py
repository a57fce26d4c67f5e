r"""The embedded Search-QA set: an encyclopedia of invented entities, and questions about it.

Everything is made up (names are built from syllables), so a model cannot answer from memory and
must search. `generate()` with the defaults writes, deterministically:

- entities: 24 countries, 240 cities, 720 people (painters, physicists, composers, novelists,
  architects, ...), 240 organisations and 720 works (novels, symphonies, paintings, films);
- passages in the wiki-18 layout (`{"id", "contents": "\\"Title\\"\\ntext"}`): one or two
  Wikipedia-style passages per entity (a lead, and for people and organisations a later-life or
  history passage), and look-alike distractors ("X family" pages listing the people who share a surname;
  works whose titles share their first words): 3,126 passages;
- questions (`{"id", "question", "golden_answers", "data_source", "hops"}`), whose
  `data_source` is the question's kind:
  `single_hop` (one fact of one passage: who founded X), `entity_attribute` (a number or class of
  one entity: the year X was founded), `multi_hop` (bridge: where was the founder of X born, two
  retrievals) and `comparison` (who was born first, A or B: two retrievals). `hops` lists the
  searches that find the gold passages, for the oracle and the tests.

Splits: each kind's questions are shuffled once and split 60 % train, 20 % valid, 20 % test.
`python -m sdar_envs.searchqa.generator --out DIR` writes the set in the real-data layout.
"""

from __future__ import annotations

import argparse
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("single_hop", "entity_attribute", "multi_hop", "comparison")
SPLIT_SHARES = (("train", 0.6), ("valid", 0.2), ("test", 0.2))

_ONSETS = (
    "b",
    "br",
    "c",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "st",
    "t",
    "th",
    "v",
    "w",
    "z",
    "qu",
    "sh",
    "ch",
)
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou", "ia", "ae")
_CODAS = ("", "n", "r", "l", "s", "th", "m", "nd", "rk", "st", "x")
OCCUPATIONS = {
    "painter": "painting",
    "physicist": "treatise",
    "composer": "symphony",
    "novelist": "novel",
    "architect": "building",
    "film director": "film",
    "poet": "poem collection",
    "sculptor": "sculpture",
}
WORK_KINDS = {
    "painting": "painted",
    "novel": "wrote",
    "treatise": "wrote",
    "symphony": "composed",
    "film": "directed",
    "poem collection": "wrote",
    "sculpture": "sculpted",
    "building": "designed",
}
PARTICIPLES = {
    "painting": "painted",
    "novel": "written",
    "treatise": "written",
    "symphony": "composed",
    "film": "directed",
    "poem collection": "written",
    "sculpture": "sculpted",
    "building": "designed",
}
INDUSTRIES = (
    "shipbuilding",
    "textiles",
    "publishing",
    "railways",
    "pharmaceuticals",
    "brewing",
    "telegraphy",
    "glassmaking",
    "aviation",
    "banking",
)
ORG_FORMS = ("{n} Company", "{n} Works", "{n} & Sons", "{n} Society", "{n} Institute", "{n} Trading House")
TITLE_WORDS = (
    "Lantern",
    "River",
    "Winter",
    "Harbor",
    "Silence",
    "Garden",
    "Mirror",
    "Orchard",
    "Storm",
    "Bell",
    "Meadow",
    "Tower",
    "Voyage",
    "Ember",
    "Willow",
    "Crown",
    "Echo",
    "Summit",
    "Tide",
    "Sparrow",
)


@dataclass
class Entity:
    """One invented entity and its facts."""

    kind: str
    name: str
    facts: dict[str, object] = field(default_factory=dict)


@dataclass
class QASet:
    """The generated corpus and questions."""

    passages: list[dict[str, str]]
    questions: list[dict[str, object]]


class _Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: tuple[int, int] = (2, 3)) -> str:
        while True:
            n = self.rng.randint(*syllables)
            w = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(n))
            w = (w + self.rng.choice(_CODAS)).capitalize()
            if w not in self.used and 4 <= len(w) <= 12:
                self.used.add(w)
                return w


def _passage(pid: int, title: str, text: str) -> dict[str, str]:
    return {"id": str(pid), "contents": f'"{title}"\n{text}'}


def _world(rng: random.Random, scale: int) -> dict[str, list[Entity]]:
    names = _Names(rng)
    countries = [Entity("country", names.word((2, 3)), {"capital": None}) for _ in range(2 * scale)]
    cities = []
    for _ in range(20 * scale):
        country = rng.choice(countries)
        cities.append(
            Entity(
                "city",
                names.word((2, 3)),
                {
                    "country": country.name,
                    "founded": rng.randint(800, 1850),
                    "population": rng.randint(12, 2400) * 1000,
                    "river": names.word((2, 2)) + " River",
                },
            )
        )
    for country in countries:
        own = [c for c in cities if c.facts["country"] == country.name] or [rng.choice(cities)]
        country.facts["capital"] = own[0].name
    surnames = [names.word((2, 3)) for _ in range(40 * scale)]
    people = []
    for _ in range(60 * scale):
        occupation = rng.choice(list(OCCUPATIONS))
        born = rng.randint(1700, 1960)
        people.append(
            Entity(
                "person",
                f"{names.word((1, 2))} {rng.choice(surnames)}",
                {
                    "occupation": occupation,
                    "born": born,
                    "died": born + rng.randint(35, 95),
                    "birthplace": rng.choice(cities).name,
                    "teacher": None,
                },
            )
        )
    for person in people:
        peers = [p for p in people if p.facts["occupation"] == person.facts["occupation"] and p is not person]
        person.facts["teacher"] = rng.choice(peers).name if peers else None
    orgs = []
    for _ in range(20 * scale):
        founder = rng.choice(people)
        orgs.append(
            Entity(
                "organisation",
                rng.choice(ORG_FORMS).format(n=names.word((2, 3))),
                {
                    "founder": founder.name,
                    "founded": founder.facts["born"] + rng.randint(22, 50),
                    "headquarters": rng.choice(cities).name,
                    "industry": rng.choice(INDUSTRIES),
                    "employees": rng.randint(5, 900) * 10,
                },
            )
        )
    works = []
    titles: set[str] = set()
    for _ in range(60 * scale):
        creator = rng.choice(people)
        kind = OCCUPATIONS[creator.facts["occupation"]]
        while True:
            title = f"The {rng.choice(TITLE_WORDS)} of {names.word((2, 3))}"
            if title not in titles:
                titles.add(title)
                break
        works.append(
            Entity(
                "work",
                title,
                {
                    "kind": kind,
                    "creator": creator.name,
                    "year": creator.facts["born"] + rng.randint(20, 60),
                },
            )
        )
    return {"country": countries, "city": cities, "person": people, "organisation": orgs, "work": works}


def _texts(e: Entity, by_name: dict[str, Entity]) -> list[str]:
    f = e.facts
    if e.kind == "country":
        return [f"{e.name} is a country whose capital and largest city is {f['capital']}."]
    if e.kind == "city":
        return [
            f"{e.name} is a city in {f['country']}, on the banks of the {f['river']}. It was founded in "
            f"{f['founded']} and has a population of {f['population']:,}."
        ]
    if e.kind == "person":
        lead = (
            f"{e.name} ({f['born']}–{f['died']}) was a {f['occupation']} born in {f['birthplace']}, "
            f"{by_name[f['birthplace']].facts['country']}."
        )
        later = f"{e.name} studied under the {f['occupation']} {f['teacher']} and spent most of a long career abroad."
        return [lead, later]
    if e.kind == "organisation":
        lead = (
            f"The {e.name} is a {f['industry']} firm founded in {f['founded']} by {f['founder']}. "
            f"Its headquarters are in {f['headquarters']}."
        )
        later = f"By the end of its first century the {e.name} employed about {f['employees']:,} people."
        return [lead, later]
    return [f"{e.name} is a {f['kind']} from {f['year']}. It was {PARTICIPLES[f['kind']]} by {f['creator']}."]


def _questions(rng: random.Random, world: dict[str, list[Entity]], by_name: dict[str, Entity]) -> list[dict]:
    qs: list[tuple[str, str, list[str], list[str]]] = []  # kind, question, answers, hops
    for org in world["organisation"]:
        f = org.facts
        qs.append(("single_hop", f"Who founded the {org.name}?", [f["founder"]], [org.name]))
        qs.append(("entity_attribute", f"In what year was the {org.name} founded?", [str(f["founded"])], [org.name]))
        founder = by_name[f["founder"]]
        qs.append(
            (
                "multi_hop",
                f"In which city was the founder of the {org.name} born?",
                [founder.facts["birthplace"]],
                [org.name, founder.name],
            )
        )
    for work in world["work"]:
        f = work.facts
        verb = WORK_KINDS[f["kind"]]
        qs.append(("single_hop", f"Who {verb} {work.name}?", [f["creator"]], [work.name]))
        creator = by_name[f["creator"]]
        qs.append(
            (
                "multi_hop",
                f"What year was the creator of {work.name} born?",
                [str(creator.facts["born"])],
                [work.name, creator.name],
            )
        )
    for person in world["person"]:
        f = person.facts
        qs.append(("single_hop", f"Where was {person.name} born?", [f["birthplace"]], [person.name]))
        qs.append(("entity_attribute", f"What was the occupation of {person.name}?", [f["occupation"]], [person.name]))
    for city in world["city"]:
        qs.append(("single_hop", f"In which country is the city of {city.name}?", [city.facts["country"]], [city.name]))
        qs.append(
            ("entity_attribute", f"In what year was {city.name} founded?", [str(city.facts["founded"])], [city.name])
        )
    people = world["person"]
    for _ in range(len(people)):
        a, b = rng.sample(people, 2)
        if a.facts["born"] != b.facts["born"]:
            first = a if a.facts["born"] < b.facts["born"] else b
            qs.append(("comparison", f"Who was born first, {a.name} or {b.name}?", [first.name], [a.name, b.name]))
    orgs = world["organisation"]
    for _ in range(len(orgs)):
        a, b = rng.sample(orgs, 2)
        if a.facts["founded"] != b.facts["founded"]:
            first = a if a.facts["founded"] < b.facts["founded"] else b
            qs.append(
                (
                    "comparison",
                    f"Which was founded earlier, the {a.name} or the {b.name}?",
                    [first.name, f"the {first.name}"],
                    [a.name, b.name],
                )
            )
    return [
        {"question": q, "golden_answers": answers, "data_source": kind, "hops": hops} for kind, q, answers, hops in qs
    ]


def generate(seed: int = 0, scale: int = 12) -> QASet:
    """The embedded corpus and questions (see the module docstring); the same for the same args."""
    rng = random.Random(seed)
    world = _world(rng, scale)
    by_name = {e.name: e for group in world.values() for e in group}
    passages: list[dict[str, str]] = []
    for group in ("country", "city", "person", "organisation", "work"):
        for e in world[group]:
            for text in _texts(e, by_name):
                passages.append(_passage(len(passages), e.name, text))
    # Distractors: people sharing a surname get a family passage naming relatives, so a search by
    # surname alone finds the wrong person.
    by_surname: dict[str, list[Entity]] = {}
    for p in world["person"]:
        by_surname.setdefault(p.name.split()[-1], []).append(p)
    for surname, members in sorted(by_surname.items()):
        if len(members) > 1:
            listed = ", ".join(f"{m.name} (a {m.facts['occupation']})" for m in members)
            passages.append(
                _passage(len(passages), f"{surname} family", f"Notable people named {surname} include {listed}.")
            )
    order = list(range(len(passages)))
    rng.shuffle(order)
    passages = [{"id": str(i), "contents": passages[j]["contents"]} for i, j in enumerate(order)]
    questions = _questions(rng, world, by_name)
    rng.shuffle(questions)
    for i, q in enumerate(questions):
        q["id"] = f"gen-{i:05d}"
    return QASet(passages, questions)


_EMBEDDED: dict[str, QASet] = {}
_LOCK = threading.Lock()


def embedded_set() -> QASet:
    """The embedded questions and corpus (generated once per process; deterministic)."""
    with _LOCK:
        if "default" not in _EMBEDDED:
            _EMBEDDED["default"] = generate()
        return _EMBEDDED["default"]


def embedded_questions(split: str) -> list:
    """The embedded set's questions of one split, as `data.Question`s."""
    from sdar_envs.searchqa.data import Question

    return [Question(str(r["id"]), str(r["question"]), tuple(r["golden_answers"]), str(r["data_source"]),
                     tuple(r["hops"])) for r in split_questions(embedded_set().questions, split)]  # fmt: skip


def split_questions(questions: list[dict], split: str) -> list[dict]:
    """The generated questions of one split: each kind is cut 60 / 20 / 20 in its fixed order."""
    shares = dict(SPLIT_SHARES)
    if split not in shares:
        raise ValueError(f"unknown Search-QA split {split!r}; expected one of {list(shares)}.")
    out = []
    for kind in KINDS:
        items = [q for q in questions if q["data_source"] == kind]
        n_train, n_valid = int(len(items) * 0.6), int(len(items) * 0.2)
        bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, len(items))}
        start, end = bounds[split]
        out += items[start:end]
    return out


def export(out: str | Path, seed: int = 0) -> Path:
    """Write the embedded set in the real-data layout: `corpus.jsonl` and `{split}.jsonl` questions.

    `gym.make("sdar/SearchQA-v0", data_dir=out, corpus=out / "corpus.jsonl")` then plays it as it
    would play Search-R1 data, and `python -m sdar_envs.searchqa.server --corpus out/corpus.jsonl`
    serves it.
    """
    from sdar_envs.searchqa.data import dump_jsonl

    out = Path(out)
    qa = generate(seed)
    dump_jsonl(qa.passages, out / "corpus.jsonl")
    for split, _ in SPLIT_SHARES:
        dump_jsonl(split_questions(qa.questions, split), out / f"{split}.jsonl")
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m sdar_envs.searchqa.generator --out DIR`: export the embedded set."""
    parser = argparse.ArgumentParser(description="Write the embedded Search-QA corpus and questions as JSON lines.")
    parser.add_argument("--out", required=True, help="folder for corpus.jsonl and train/valid/test.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = export(args.out, args.seed)
    print(f"wrote {out}/corpus.jsonl and {', '.join(s + '.jsonl' for s, _ in SPLIT_SHARES)}")


if __name__ == "__main__":
    main()
