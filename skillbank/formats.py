"""Importers for the skill-bank formats researchers already have, into our format (a dict).

- **SkillRL JSON**: `{"general_skills": [...], "task_specific_skills": {type: [...]},
  "common_mistakes": [...]}` (Search-QA banks name the middle key `query_type_skills`). Skills are
  `{"skill_id", "title", "principle", "when_to_apply"}`, mistakes
  `{"mistake_id", "description", "why_it_happens", "how_to_avoid"}`. SkillRL's ALFWorld banks key
  task types by short names (`clean`, `heat`, `pick_and_place`, ...); aliases to ALFWorld's task
  types are added so that the env's explicit `task_type` finds them.
- **SDAR skill folder** (the layout of `skills/<env>/` in ZJU-REAL/SDAR, which its code reads): a
  folder of markdown skill files and a `skill_mapping.json` with `skill_files` (skill name ->
  markdown file), `task_to_skill` (task type -> skill name) and, optionally, `task_keywords` (task
  type -> keywords found in the task text). The skill named `general_skills` is given for every
  task; each task type gets its mapped skill. Every file becomes one skill that keeps its whole
  text, and the bank's layout is "verbatim", so a retrieval writes the files as the reference
  does: general skills, a blank line, the task type's file. Well-known names of the same task
  types (ALFWorld's `pick_and_place_simple`, Search-QA's data sources nq, hotpotqa, ...) become
  aliases, as the reference maps them.

Each importer returns a dict in our format; `skillbank.schema.validate` then checks it as usual.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from skillbank.schema import FORMAT, VERSION, SkillBankError

#: SkillRL's ALFWorld category names -> the ALFWorld task types they cover.
SKILLRL_ALFWORLD_ALIASES = {
    "pick_and_place": ("pick_and_place_simple",),
    "pick_two_obj_and_place": ("pick_two_obj_and_place",),
    "look_at_obj_in_light": ("look_at_obj_in_light",),
    "examine": ("look_at_obj_in_light",),
    "clean": ("pick_clean_then_place_in_recep",),
    "heat": ("pick_heat_then_place_in_recep",),
    "cool": ("pick_cool_then_place_in_recep",),
}
#: An SDAR folder's skill names -> the task types and data sources the reference maps to them.
SDAR_FOLDER_ALIASES = {
    "pick_and_place": ("pick_and_place_simple",),
    "direct_retrieval": ("nq", "triviaqa", "single_hop"),
    "entity_attribute_lookup": ("popqa", "entity_attribute"),
    "multi_hop_reasoning": ("hotpotqa", "2wikimultihopqa", "2wiki", "musique", "bamboogle", "multi_hop"),
    "compare": ("comparison",),
}
GENERAL_SKILL = "general_skills"
DEFAULT_WHEN = "Whenever it applies to the current step."
MAPPING_FILE = "skill_mapping.json"
_WHEN_RE = re.compile(r"^\s*(?:\*\*|__)?when to (?:apply|use)\s*:?(?:\*\*|__)?\s*:?\s*(.+)$", re.I)


def from_skillrl(data: Any, name: str, source: str) -> dict[str, Any]:
    """Convert a parsed SkillRL skill bank."""
    if not isinstance(data, dict) or "general_skills" not in data:
        raise SkillBankError(source, ["not a SkillRL bank: expected a JSON object with 'general_skills'"])
    problems: list[str] = []
    general = [_skillrl_skill(s, f"general_skills[{i}]", problems) for i, s in enumerate(data["general_skills"])]
    key = "query_type_skills" if "query_type_skills" in data else "task_specific_skills"
    specific = data.get(key, {})
    if not isinstance(specific, dict):
        problems.append(f"{key}: expected an object of task type -> list of skills")
        specific = {}
    task_types = {}
    for task_type, skills in specific.items():
        if not isinstance(skills, list):
            problems.append(f"{key}[{task_type!r}]: expected a list of skills")
            continue
        converted = [_skillrl_skill(s, f"{key}[{task_type!r}][{i}]", problems) for i, s in enumerate(skills)]
        task_types[task_type] = {"keywords": [], "skills": converted}
    raw_mistakes = data.get("common_mistakes", [])
    mistakes = [_skillrl_mistake(m, f"common_mistakes[{i}]", problems) for i, m in enumerate(raw_mistakes)]
    if problems:
        raise SkillBankError(source, problems)
    aliases = {
        alias: short
        for short, targets in SKILLRL_ALFWORLD_ALIASES.items()
        if short in task_types
        for alias in targets
        if alias not in task_types
    }
    return _bank(name, general, task_types, mistakes, aliases, f"Imported from SkillRL format ({source}).")


def from_sdar_dir(folder: Path, name: str) -> dict[str, Any]:
    """Convert an SDAR skill folder (markdown files + `skill_mapping.json`, the reference's layout)."""
    mapping_file = folder / MAPPING_FILE
    try:
        mapping = json.loads(mapping_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SkillBankError(str(folder), [f"no {MAPPING_FILE} in the folder"]) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SkillBankError(str(mapping_file), [f"not valid JSON: {err}"]) from None
    problems: list[str] = []
    files = _string_map(mapping, "skill_files", problems)
    task_to_skill = _string_map(mapping, "task_to_skill", problems)
    keywords = mapping.get("task_keywords", {}) if isinstance(mapping, dict) else {}
    if not isinstance(keywords, dict) or not all(
            isinstance(v, list) and all(isinstance(k, str) for k in v) for v in keywords.values()):
        problems.append(f"{MAPPING_FILE}['task_keywords']: expected an object of task type -> list of keywords")
        keywords = {}
    skills = {}
    for skill_name, file_name in files.items():
        skill = _markdown_skill(folder, skill_name, file_name, f"{MAPPING_FILE}['skill_files'][{skill_name!r}]",
                                problems)
        if skill is not None:
            skills[skill_name] = skill
    for task_type, skill_name in task_to_skill.items():
        if skill_name not in files:
            problems.append(f"{MAPPING_FILE}['task_to_skill'][{task_type!r}]: {skill_name!r} is not a key of "
                            f"'skill_files' ({sorted(files)})")
    if problems:
        raise SkillBankError(str(folder), problems)
    general = [skills[GENERAL_SKILL]] if GENERAL_SKILL in skills else []
    task_types = {t: {"keywords": [k for k in keywords.get(t, []) if k.strip()], "skills": [skills[n]]}
                  for t, n in task_to_skill.items() if n != GENERAL_SKILL}
    aliases = {alias: target for target, names in SDAR_FOLDER_ALIASES.items() if target in task_types
               for alias in names if alias not in task_types}
    data = _bank(name, general, task_types, [], aliases, f"Imported from an SDAR skill folder ({folder}).")
    return {**data, "layout": "verbatim"}


def _string_map(mapping: Any, key: str, problems: list[str]) -> dict[str, str]:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        expected = "skill name -> markdown file" if key == "skill_files" else "task type -> skill name"
        problems.append(f"{MAPPING_FILE}[{key!r}]: expected an object of {expected}, found {type(value).__name__}")
        return {}
    return value


def _bank(name, general, task_types, mistakes, aliases, description) -> dict[str, Any]:
    data = {"format": FORMAT, "version": VERSION, "name": name, "description": description,
            "general": general, "task_types": task_types, "mistakes": mistakes}
    if aliases:
        data["aliases"] = aliases
    return data


def _unique(skills: list[dict[str, str]], general: list[dict[str, str]]) -> list[dict[str, str]]:
    """A skill file listed under a type and also under `general` is kept once, as general.

    (A file listed under several task types stays under each: the format allows that.)
    """
    general_ids = {s["id"] for s in general}
    return [s for s in skills if s["id"] not in general_ids]


def _text(item: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _skillrl_skill(item: Any, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected an object, found {type(item).__name__}")
        return {}
    skill = {
        "id": _text(item, ("skill_id", "id", "name")),
        "title": _text(item, ("title", "name")),
        "principle": _text(item, ("principle", "description", "content")),
        "when": _text(item, ("when_to_apply", "application_context", "when")) or DEFAULT_WHEN,
    }
    for key, source_keys in (("id", "skill_id"), ("title", "title"), ("principle", "principle")):
        if not skill[key]:
            problems.append(f"{where}: missing {source_keys!r}")
    return skill


def _skillrl_mistake(item: Any, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected an object, found {type(item).__name__}")
        return {}
    description = _text(item, ("description", "title", "mistake"))
    avoid = _text(item, ("how_to_avoid", "fix", "principle"))
    mistake = {
        "id": _text(item, ("mistake_id", "id")),
        "title": description,
        "principle": avoid,
        "when": _text(item, ("why_it_happens", "when")) or DEFAULT_WHEN,
    }
    for key, source_key in (("id", "mistake_id"), ("title", "description"), ("principle", "how_to_avoid")):
        if not mistake[key]:
            problems.append(f"{where}: missing {source_key!r}")
    return mistake


def _markdown_skill(folder: Path, skill_id: str, file_name: str, where: str,
                    problems: list[str]) -> dict[str, str] | None:
    """One markdown file as a skill: its heading as the title, its body as the principle, its whole text kept."""
    path = folder / file_name
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        problems.append(f"{where}: {file_name} does not exist in {folder}")
        return None
    except UnicodeDecodeError:
        problems.append(f"{where}: {file_name} is not UTF-8 text")
        return None
    title, when, body = "", "", []
    for line in text.splitlines():
        stripped = line.strip()
        if not title and stripped.startswith("#"):
            title = stripped.strip("#").strip()
        elif match := _WHEN_RE.match(stripped):
            when = match.group(1).strip()
        elif stripped:
            body.append(stripped)
    if not title or not body:
        problems.append(f"{where}: {file_name} needs a '# Title' line and a body (the skill itself)")
        return None
    return {"id": skill_id, "title": title, "principle": " ".join(body), "when": when or DEFAULT_WHEN, "text": text}
