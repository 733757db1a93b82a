"""The guide, consent form and codebook data are complete in both languages."""

from interview.store.consent_form import CONSENT_ITEMS, validate_consent
from interview.store.content import (
    GUIDES_DIR,
    QUESTION_KINDS,
    read_codebook,
    read_toml,
    validate_guide,
)

STAFF_THEMES = {
    "A": {
        "inhibits": {
            "Poor and lacking communication",
            "Culture & attitude",
            "Some resources are missing",
        },
        "promotes": {
            "A holistic and open work environment",
            "Systemic assertive",
            "Focus on social recovery",
        },
    },
    "B": {
        "inhibits": {"Lack of resources", "Incorrect focus or problem-focused practice"},
        "promotes": {
            "Function recovery advocacy & practice (Function FACT)",
            "Good triple management",
        },
    },
    "C": {
        "inhibits": {
            "Administration & management matters",
            "Segregation & prioritizing",
            "External interaction",
        },
        "promotes": {
            "Skilled, creative & dedicated team members",
            "The FACT service model",
            "Internal & external cooperation",
        },
    },
}


def _theme_keys():
    return {t["key"] for t in read_codebook()["themes"]}


def test_every_guide_is_complete_in_both_languages():
    guides = sorted(GUIDES_DIR.glob("guide-*.toml"))
    assert guides
    for path in guides:
        assert validate_guide(read_toml(path), _theme_keys()) == [], path.name


def test_guide_v1_covers_what_the_study_asks():
    guide = read_toml(GUIDES_DIR / "guide-v1.toml")
    kinds = [q["kind"] for s in guide["sections"] for q in s["questions"]]
    assert set(kinds) == set(QUESTION_KINDS)
    assert kinds.count("inhibits") >= 4 and kinds.count("promotes") >= 4
    for q in (q for s in guide["sections"] for q in s["questions"]):
        assert 1 <= len(q["probes"]) <= 3
    intro = guide["intro"]["en"].lower()
    for must in ("confidential", "break", "stop", "treatment"):
        assert must in intro, must
    assert "behandling" in guide["intro"]["nb"].lower()


def test_validation_catches_a_missing_translation():
    guide = read_toml(GUIDES_DIR / "guide-v1.toml")
    guide["sections"][0]["questions"][0]["text"]["en"] = ""
    del guide["sections"][1]["questions"][0]["probes"][0]["nb"]
    errors = validate_guide(guide, _theme_keys())
    assert any(".text.en: empty" in e for e in errors)
    assert any("probes[0]" in e for e in errors)


def test_consent_form_has_the_four_items_and_only_participation_required():
    form = read_toml(GUIDES_DIR / "consent-v1.toml")
    assert validate_consent(form) == []
    assert tuple(i["key"] for i in form["items"]) == CONSENT_ITEMS
    assert [i["required"] for i in form["items"]] == [True, False, False, False]
    for lang in ("nb", "en"):
        assert form["withdrawal"][lang] and form["contact"][lang]


def test_codebook_holds_the_staff_themes_of_each_team():
    codebook = read_codebook()
    names = {t["key"]: t["name"] for t in codebook["themes"]}
    for case in codebook["cases"]:
        found = {"inhibits": set(), "promotes": set()}
        for staff in case["staff"]:
            found[staff["polarity"]].add(names[staff["theme"]]["en"])
            assert names[staff["theme"]]["nb"]
        assert found == STAFF_THEMES[case["code"]], case["code"]
