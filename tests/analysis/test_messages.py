"""The message catalogue and Go-style rendering: texts as istioctl prints them."""

from __future__ import annotations

import pytest

from malla.analysis.messages import catalogue, go_quote, go_sprintf, message_type


def test_catalogue_maps_codes_and_levels() -> None:
    assert message_type("ReferencedResourceNotFound").code == "IST0101"
    assert message_type("ReferencedResourceNotFound").level == "error"
    assert message_type("VirtualServiceHostNotFoundInGateway").level == "warning"
    assert message_type("PortNameIsNotUnderNamingConvention").level == "info"
    codes = [m.code for m in catalogue().values()]
    assert len(codes) == len(set(codes)), "every catalogue code is unique"


def test_render_referenced_resource_not_found() -> None:
    text = message_type("ReferencedResourceNotFound").render("host", "reviews-bogus")
    assert text == 'Referenced host not found: "reviews-bogus"'


def test_render_lists_as_go_prints_slices() -> None:
    text = message_type("VirtualServiceDestinationPortSelectorRequired").render("reviews", [80, 443])
    assert text == (
        'This VirtualService routes to a service "reviews" that exposes multiple ports [80 443]. '
        "Specifying a port in the destination is required to disambiguate."
    )


def test_render_checks_argument_count() -> None:
    with pytest.raises(TypeError, match="ReferencedResourceNotFound takes 2 arguments"):
        message_type("ReferencedResourceNotFound").render("host")


def test_unknown_message_names_itself() -> None:
    with pytest.raises(KeyError, match="NoSuchMessage"):
        message_type("NoSuchMessage")


@pytest.mark.parametrize(
    ("template", "args", "expected"),
    [
        ("%s and %v", ["a", "b"], "a and b"),
        ("%q", ['say "hi"\n'], '"say \\"hi\\"\\n"'),
        ("%q", [["a", "b"]], '["a" "b"]'),
        ("%v", [["x", "y"]], "[x y]"),
        ("%d%%", [50], "50%"),
        ("%d", ["x"], "%!d(str=x)"),
        ("%s %s", ["only"], "only %!s(MISSING)"),
        ("%s", ["a", "b"], "a%!(EXTRA str=b)"),
    ],
)
def test_go_sprintf(template: str, args: list, expected: str) -> None:
    assert go_sprintf(template, args) == expected


def test_go_quote_escapes_control_characters_and_keeps_unicode() -> None:
    assert go_quote("tab\there\x01ñ") == '"tab\\there\\x01ñ"'
