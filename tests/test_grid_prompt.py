"""`<lora:...>` tags in prompts: added when absent, replaced when present, weight 0 removes."""

from __future__ import annotations

from lora_trainer.webui.grid_prompt import (
    add_activation_text,
    existing_weight,
    find_lora_tags,
    format_lora_tag,
    put_lora,
)
from lora_trainer.webui.grid_values import Weight

W = Weight(0.5, 0.5)


def test_tag_is_added_when_absent():
    assert put_lora("a dog", {"mine"}, "mine", W) == "a dog <lora:mine:0.5>"
    assert put_lora("a dog ", {"mine"}, "mine", W) == "a dog <lora:mine:0.5>"
    assert put_lora("", {"mine"}, "mine", W) == "<lora:mine:0.5>"


def test_tag_is_replaced_in_place_when_present():
    prompt = "a dog, <lora:mine:1>, grass <lora:other:0.7>"
    assert put_lora(prompt, {"mine"}, "mine", W) == "a dog, <lora:mine:0.5>, grass <lora:other:0.7>"
    # an alias or an epoch file of the same LoRA, or the lyco spelling, counts as the same LoRA
    prompt = "x <lyco:mine-alias:1:0.2> y <lora:mine-000002:1>"
    assert put_lora(prompt, {"mine", "mine-alias", "mine-000002"}, "mine-000004", W) == (
        "x <lora:mine-000004:0.5> y "
    )


def test_weight_zero_leaves_the_lora_out_and_the_text_unchanged():
    off = Weight(0, 0)
    assert put_lora("a dog", {"mine"}, "mine", off) == "a dog"
    # the Lora extension drops a tag's text, so the cell with the tag encodes "a dog, , grass"
    assert put_lora("a dog, <lora:mine:1>, grass", {"mine"}, "mine", off) == "a dog, , grass"
    assert put_lora("a dog", {"mine"}, None, W) == "a dog"


def test_te_unet_form():
    assert format_lora_tag("mine", Weight(1, 0)) == "<lora:mine:1:0>"
    assert format_lora_tag("mine", Weight(0.25, 0.25)) == "<lora:mine:0.25>"
    assert put_lora("a dog", {"mine"}, "mine", Weight(0, 1)) == "a dog <lora:mine:0:1>"


def test_reading_tags_like_the_lora_extension():
    tags = find_lora_tags("<lora:a> <lora:b:0.5> <lora:c:1:0> <lora:d:te=0.3:unet=0.6> <lora:e:x>")
    assert [(t.name, t.te, t.unet) for t in tags] == [
        ("a", 1.0, 1.0),
        ("b", 0.5, 0.5),
        ("c", 1.0, 0.0),
        ("d", 0.3, 0.6),
        ("e", None, None),
    ]
    assert existing_weight("p <lora:b:0.5>", {"b"}) == Weight(0.5, 0.5)
    assert existing_weight("p <lora:e:x>", {"e"}) is None
    assert find_lora_tags("<hypernet:a:1> <LORA:b:1>") == []


def test_activation_text_is_added_once():
    assert add_activation_text("a dog", "sks") == "a dog, sks"
    assert add_activation_text("a dog,", "sks") == "a dog, sks"
    assert add_activation_text("a SKS dog", "sks") == "a SKS dog"
    assert add_activation_text("", "sks") == "sks"
    assert add_activation_text("a dog", "  ") == "a dog"
    once = add_activation_text(add_activation_text("a dog", "sks toy"), "sks toy")
    assert once == "a dog, sks toy"
