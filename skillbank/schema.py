"""The skill-bank file format (JSON), its validation, and the in-memory `BankSpec`.

    {
      "format": "sdar-skillbank",
      "version": 1,
      "name": "alfworld",
      "description": "optional free text",
      "general": [SKILL, ...],                       # advice for every task
      "task_types": {                                 # advice per task type, in priority order
        "pick_heat_then_place_in_recep": {
          "keywords": ["hot", "heat"],                # whole-word rules, used only when the
          "skills": [SKILL, ...]                      #   env gives no known task type
        }
      },
      "mistakes": [SKILL, ...],                       # common mistakes and how to avoid them
      "aliases": {"heat": "pick_heat_then_place_in_recep"},  # optional: other names of a type
      "layout": "lines"                               # optional: how retrieved skills are written
    }

    SKILL = {"id": "heat-1", "title": "...", "principle": "...", "when": "...", "text": "..."}

`layout` "lines" (the default) writes each skill as one line under its section's heading;
"verbatim" writes each skill's optional `text` as it is (its line when it has none), blocks
separated by a blank line and no headings: how the reference SDAR code gives its markdown skill
files to the teacher (banks imported from an SDAR skill folder use it).

Ids are unique across the whole bank, except that one skill (same id, same text) may be listed
under several task types. `validate` reports every problem with its location
(file, key, index) and a bank that has any problem is not loaded at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMAT = "sdar-skillbank"
VERSION = 1
SKILL_FIELDS = ("id", "title", "principle", "when")
OPTIONAL_SKILL_FIELDS = ("text",)
SECTIONS = ("general", "task_types", "mistakes")
LAYOUTS = ("lines", "verbatim")


class SkillBankError(ValueError):
    """A skill bank is malformed; `problems` lists each one with its location."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the skill bank:\n{listed}")


@dataclass(frozen=True)
class Skill:
    """One piece of advice: what, why, and when to apply it."""

    id: str
    title: str
    principle: str
    when: str
    text: str = ""  # the skill as written in its source (verbatim layout), if the bank keeps it

    def to_dict(self) -> dict[str, str]:
        data = {"id": self.id, "title": self.title, "principle": self.principle, "when": self.when}
        return {**data, "text": self.text} if self.text else data


@dataclass(frozen=True)
class TaskTypeGroup:
    """A task type's keyword rules and skills."""

    keywords: tuple[str, ...]
    skills: tuple[Skill, ...]


@dataclass
class BankSpec:
    """A validated skill bank (see the module docstring for the file format)."""

    name: str
    general: tuple[Skill, ...]
    task_types: dict[str, TaskTypeGroup]
    mistakes: tuple[Skill, ...]
    aliases: dict[str, str] = field(default_factory=dict)
    description: str = ""
    layout: str = "lines"

    def all_skills(self) -> list[Skill]:
        """Every distinct skill: general, then each task type's, then mistakes (the bank's fixed order)."""
        skills = [*self.general, *(s for g in self.task_types.values() for s in g.skills), *self.mistakes]
        return list({s.id: s for s in skills}.values())

    def canonical_type(self, task_type: str | None) -> str | None:
        """The bank's name for `task_type` (through `aliases`), or None when the bank lacks it."""
        if task_type is None:
            return None
        task_type = self.aliases.get(task_type, task_type)
        return task_type if task_type in self.task_types else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "name": self.name}
        if self.description:
            data["description"] = self.description
        data["general"] = [s.to_dict() for s in self.general]
        data["task_types"] = {
            t: {"keywords": list(g.keywords), "skills": [s.to_dict() for s in g.skills]}
            for t, g in self.task_types.items()
        }
        data["mistakes"] = [s.to_dict() for s in self.mistakes]
        if self.aliases:
            data["aliases"] = dict(self.aliases)
        if self.layout != "lines":
            data["layout"] = self.layout
        return data


def validate(data: Any, source: str = "<skill bank>") -> BankSpec:
    """Check a parsed bank file and build the `BankSpec`, or raise SkillBankError listing every problem."""
    if not isinstance(data, dict):
        raise SkillBankError(source, [f"the top level must be a JSON object, found {type(data).__name__}"])
    problems: list[str] = []
    name = _check_header(data, problems)
    seen: dict[str, tuple[str, Skill]] = {}
    general = _skills(data.get("general", []), "general", problems, seen)
    mistakes = _skills(data.get("mistakes", []), "mistakes", problems, seen)
    groups = _task_type_groups(data.get("task_types", {}), problems, seen)
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        problems.append("key 'aliases': expected an object of name -> task type (strings)")
        aliases = {}
    problems += [f"aliases[{a!r}]: {t!r} is not a key of 'task_types'" for a, t in aliases.items() if t not in groups]
    if not general and not mistakes and not any(g.skills for g in groups.values()):
        problems.append("the bank holds no skills at all")
    layout = data.get("layout", "lines")
    if layout not in LAYOUTS:
        problems.append(f"key 'layout': expected one of {list(LAYOUTS)}, found {layout!r}")
    if problems:
        raise SkillBankError(source, problems)
    description = str(data.get("description", ""))
    return BankSpec(name, tuple(general), groups, tuple(mistakes), dict(aliases), description, layout)


def _check_header(data: dict[str, Any], problems: list[str]) -> str:
    if data.get("format") != FORMAT:
        problems.append(f"key 'format': expected {FORMAT!r}, found {data.get('format')!r}")
    if data.get("version") != VERSION:
        problems.append(f"key 'version': expected {VERSION}, found {data.get('version')!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("key 'name': expected a non-empty string")
        name = ""
    unknown = sorted(set(data) - {"format", "version", "name", "description", "aliases", "layout", *SECTIONS})
    if unknown:
        problems.append(f"unknown key(s) {unknown}; allowed: format, version, name, description, aliases, layout, "
                        f"{SECTIONS}")
    return name.strip()


def _task_type_groups(raw: Any, problems: list[str], seen: dict[str, tuple[str, Skill]]) -> dict[str, TaskTypeGroup]:
    if not isinstance(raw, dict):
        problems.append(f"key 'task_types': expected an object of task type -> group, found {type(raw).__name__}")
        return {}
    groups = {}
    for task_type, group in raw.items():
        where = f"task_types[{task_type!r}]"
        if not isinstance(group, dict):
            problems.append(f"{where}: expected an object with 'keywords' and 'skills'")
            continue
        extra = sorted(set(group) - {"keywords", "skills"})
        if extra:
            problems.append(f"{where}: unknown key(s) {extra}; allowed: keywords, skills")
        keywords = group.get("keywords", [])
        if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
            problems.append(f"{where}.keywords: expected a list of non-empty strings")
            keywords = []
        skills = _skills(group.get("skills", []), f"{where}.skills", problems, seen)
        groups[task_type] = TaskTypeGroup(tuple(k.strip().lower() for k in keywords), tuple(skills))
    return groups


def _skills(raw: Any, where: str, problems: list[str], seen: dict[str, tuple[str, Skill]]) -> list[Skill]:
    if not isinstance(raw, list):
        problems.append(f"{where}: expected a list of skills, found {type(raw).__name__}")
        return []
    skills = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{here}: expected an object with {list(SKILL_FIELDS)}, found {type(item).__name__}")
            continue
        bad = False
        for key in SKILL_FIELDS:
            if key not in item:
                problems.append(f"{here}: missing field {key!r}")
                bad = True
            elif not isinstance(item[key], str) or not item[key].strip():
                problems.append(f"{here}.{key}: expected a non-empty string, found {item[key]!r}")
                bad = True
        extra = sorted(set(item) - set(SKILL_FIELDS) - set(OPTIONAL_SKILL_FIELDS))
        if extra:
            problems.append(f"{here}: unknown field(s) {extra}; a skill has {list(SKILL_FIELDS)} and optionally "
                            f"{list(OPTIONAL_SKILL_FIELDS)}")
        if "text" in item and not isinstance(item["text"], str):
            problems.append(f"{here}.text: expected a string, found {type(item['text']).__name__}")
            bad = True
        if bad:
            continue
        skill = Skill(item["id"].strip(), item["title"].strip(), item["principle"].strip(), item["when"].strip(),
                      item.get("text", "").strip())
        if skill.id in seen:
            first_where, first = seen[skill.id]
            shared = first == skill and first_where.startswith("task_types") and here.startswith("task_types")
            if not shared:  # one skill may serve several task types; nothing else may share an id
                problems.append(f"{here}: duplicate id {skill.id!r} (first used at {first_where})")
                continue
        else:
            seen[skill.id] = (here, skill)
        skills.append(skill)
    return skills
