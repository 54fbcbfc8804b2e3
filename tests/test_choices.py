"""choices: the one wording for a misspelt name (bad value, closest valid one, every choice) and its options."""

from __future__ import annotations

import pytest

from analogdecorr.choices import check_choice, check_choices, choice_message, closest, closest_hint
from analogdecorr.errors import ConfigError, FormatError

RULES = ("bp", "fa", "dfa", "np")


def test_a_valid_name_is_returned_unchanged():
    assert check_choice("dfa", RULES, "rule") == "dfa"


def test_an_unknown_name_names_itself_the_closest_and_every_choice():
    with pytest.raises(ConfigError) as e:
        check_choice("nq", RULES, "rule")
    assert str(e.value) == "unknown rule 'nq' (did you mean 'np'?); choose from bp, fa, dfa, np"


def test_nothing_alike_gives_no_guess_but_still_every_choice():
    assert closest("xyzzy", RULES) is None and closest_hint("xyzzy", RULES) == ""
    assert choice_message("xyzzy", RULES, "rule") == "unknown rule 'xyzzy'; choose from bp, fa, dfa, np"


def test_error_type_where_and_listing_are_the_callers():
    with pytest.raises(FormatError, match=r"^unknown unit rule 'whitne' on the unit \(did you mean 'whiten'\?\); "
                                          r"choose from offdiag, whiten$"):
        check_choice("whitne", ("offdiag", "whiten"), "unit rule", where=" on the unit", error=FormatError)
    message = choice_message("Idealised", ["IdealizedPreset", "PCMPreset"], "preset", listing="see `presets`")
    assert message == "unknown preset 'Idealised' (did you mean 'IdealizedPreset'?); see `presets`"


def test_a_non_string_value_is_named_not_crashed_on():
    with pytest.raises(ConfigError, match=r"unknown dataset '3'; choose from digits"):
        check_choice(3, ("digits",), "dataset")


def test_check_choices_splits_maps_aliases_and_refuses_empty():
    assert check_choices("bp, np+", RULES, "rule", aliases={"np+": "np"}) == ("bp", "np")
    with pytest.raises(ConfigError, match="no rule given; choose from bp"):
        check_choices(" , ", RULES, "rule")
    with pytest.raises(ConfigError, match="did you mean 'fa'"):
        check_choices(["bp", "faa"], RULES, "rule")
