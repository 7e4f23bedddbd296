"""The paper's stimuli, loaded verbatim from `fixtures/paper_stimuli.json` and checked."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from introspection_bench.errors import StimuliError

#: Where the pinned copy lives in a checkout; the package ships the same file.
DEFAULT_STIMULI = Path(__file__).resolve().parent.parent / "fixtures" / "paper_stimuli.json"
_PACKAGED = Path(__file__).resolve().parent / "data" / "paper_stimuli.json"

_WORD_LISTS = (
    "concept_words",
    "baseline_words",
    "control_words",
    "sentences",
    "yes_bias_questions",
)
_TEMPLATES = (
    "injected_thought",
    "alternative_prompts",
    "thought_vs_text_think",
    "thought_vs_text_repeat",
    "prefill",
    "intentional_control",
    "yes_bias",
    "concept_vector",
)


@dataclass(frozen=True)
class Stimuli:
    """The stimuli file, validated, with its hash."""

    data: Mapping[str, Any]
    sha256: str
    """sha256 of the file's bytes: recorded with every trial and summary."""
    path: str

    def words(self, name: str) -> list[str]:
        """A word list (`concept_words`, `baseline_words`, ...), lowercased."""
        return [w.lower() for w in self.data[name]]

    def template(self, name: str) -> Mapping[str, Any]:
        """One experiment's template block."""
        return self.data["templates"][name]

    @staticmethod
    def turns(template: Mapping[str, Any], **fields: str) -> list[tuple[str, str]]:
        """The template's turns with `{placeholders}` filled.

        Raises:
            StimuliError: When a placeholder has no value.

        """
        try:
            return [(role, text.format(**fields)) for role, text in template["turns"]]
        except KeyError as error:
            raise StimuliError(
                f"template placeholder {error} has no value; pass it to turns()"
            ) from error


def load_stimuli(path: str | Path | None = None) -> Stimuli:
    """Load and validate the stimuli file.

    Raises:
        StimuliError: Naming the file and the missing or malformed field.

    """
    source = Path(path) if path else (DEFAULT_STIMULI if DEFAULT_STIMULI.is_file() else _PACKAGED)
    try:
        raw = source.read_bytes()
        data = json.loads(raw)
    except (OSError, json.JSONDecodeError) as error:
        raise StimuliError(
            f"cannot read stimuli {source}: {error}; restore fixtures/paper_stimuli.json"
        ) from error
    for name in _WORD_LISTS:
        values = data.get(name)
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and v.strip() for v in values)
        ):
            raise StimuliError(f"{source}: '{name}' must be a non-empty list of non-empty strings")
    templates = data.get("templates")
    if not isinstance(templates, dict):
        raise StimuliError(f"{source}: 'templates' must be an object")
    for name in _TEMPLATES:
        if name not in templates:
            raise StimuliError(f"{source}: template '{name}' is missing")
    return Stimuli(data, hashlib.sha256(raw).hexdigest(), str(source))
