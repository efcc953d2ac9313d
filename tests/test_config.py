from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rag_prompts import ConfigError, Settings, load_settings

from .conftest import CONFIG, write


def test_repository_config_has_at_least_three_agents() -> None:
    settings = load_settings(CONFIG, environ={})
    assert len(settings.agents) >= 3
    triage = settings.profile("claims_triage")
    assert (triage.k, triage.budget, triage.tags) == (16, 1200, ("claims",))
    assert triage.base_message.startswith("You triage")
    assert settings.store_location == str(CONFIG.parent / ".rag_prompts/chroma")


def test_profile_falls_back_to_top_level_values(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'k = 3\nbudget = 700\nmodel = "gpt-4"\n[agents.a]\nbudget = 300\n')
    profile = load_settings(path, environ={}).profile("a")
    assert (profile.k, profile.budget, profile.model, profile.tags) == (3, 300, "gpt-4", ())


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "budget = 700\n")
    settings = load_settings(path, environ={"RAG_PROMPTS_BUDGET": "900", "RAG_PROMPTS_STORE": "http://127.0.0.1:9"})
    assert settings.budget == 900
    assert settings.store_location == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("budget = -5\n", "c.toml: budget: Input should be greater than or equal to 1"),
        ("bugdet = 5\n", "c.toml: bugdet: unknown setting"),
        ("[agents.x]\nk = 'many'\n", "c.toml: agents.x.k: Input should be a valid integer"),
        ("[agents.x]\ntopk = 3\n", "c.toml: agents.x.topk: unknown setting"),
        ("budget = \n", "c.toml: invalid TOML"),
    ],
)
def test_invalid_file_names_the_key_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError, match="c.toml") as caught:
        load_settings(path, environ={})
    assert message.split(": ", 1)[1] in str(caught.value)


def test_invalid_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RAG_PROMPTS_K: k: Input should be a valid integer"):
        load_settings(None, environ={"RAG_PROMPTS_K": "lots"})


def test_unknown_agent_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown agent 'nobody'; known agents: claims_triage, compliance_reviewer"):
        load_settings(CONFIG, environ={}).profile("nobody")


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_profile_overrides_are_validated() -> None:
    settings = load_settings(CONFIG, environ={})
    profile = settings.profile("claims_triage", k=2, budget=700, tags=[], model=None)
    assert (profile.k, profile.budget, profile.tags, profile.model) == (2, 700, (), "gpt-4")
    assert settings.profile("claims_triage").tags == ("claims",)
    with pytest.raises(ConfigError, match="agent 'claims_triage': k: Input should be less than or equal to 200"):
        settings.profile("claims_triage", k=500)
    with pytest.raises(ConfigError, match="unknown profile override.*top_k"):
        settings.profile("claims_triage", top_k=3)


def test_every_top_level_setting_is_read_from_its_environment_variable() -> None:
    defaults = Settings(base_dir=Path("/tmp"))
    chosen: dict[str, Any] = {"store": "http://127.0.0.1:9", "corpus": ("a", "b"), "embedding_backend": "torch",
                              "embedding_precision": "int8", "context_limit": 4096,
                              "keep_versions_days": 30}  # fmt: skip
    for key in Settings.model_fields:
        if key in {"agents", "base_dir"} or key in chosen:
            continue
        value = getattr(defaults, key)
        if isinstance(value, bool):
            chosen[key] = not value
        elif isinstance(value, int | float):
            chosen[key] = value / 2 if isinstance(value, float) else value + 1
        else:
            chosen[key] = "x1x"
    environ = {f"RAG_PROMPTS_{key.upper()}": ":".join(v) if key == "corpus" else str(v) for key, v in chosen.items()}
    settings = load_settings(None, environ=environ)
    assert {key: getattr(settings, key) for key in chosen} == chosen


def test_old_neighbour_keys_still_load_with_a_warning_naming_the_new_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "context_window = 1\ncontext_weight = 0.25\n")
    with pytest.warns(DeprecationWarning, match=r"c\.toml: context_window is deprecated: use neighbour_window$"):
        settings = load_settings(path, environ={})
    assert (settings.neighbour_window, settings.neighbour_weight) == (1, 0.25)
    assert "context_window" not in Settings.model_fields
    old_variable = "^RAG_PROMPTS_CONTEXT_WEIGHT is deprecated: use RAG_PROMPTS_NEIGHBOUR_WEIGHT$"
    with pytest.warns(DeprecationWarning, match=old_variable):
        assert load_settings(None, environ={"RAG_PROMPTS_CONTEXT_WEIGHT": "2"}).neighbour_weight == 2
    with pytest.warns(DeprecationWarning, match="use neighbour_window"):
        assert load_settings(None, environ={}, context_window=0).neighbour_window == 0
    with pytest.raises(ConfigError, match=r"c\.toml: neighbour_window: Input should be less than or equal to 16"):
        load_settings(write(tmp_path / "c.toml", "context_window = 99\n"), environ={})
