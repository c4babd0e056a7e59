"""Fake of modules/api/models.py (A1111 v1.10.1): the script description served by the API.

Real: pydantic models `ScriptArg(label, value, minimum, maximum, step, choices)` and
`ScriptInfo(name, is_alwayson, is_img2img, args)` (GET /sdapi/v1/script-info). Plain
classes here: only the fields are imitated, not pydantic's validation.
"""

from __future__ import annotations


class ScriptArg:
    def __init__(self, label=None, value=None, minimum=None, maximum=None, step=None, choices=None):
        self.label = label
        self.value = value
        self.minimum = minimum
        self.maximum = maximum
        self.step = step
        self.choices = choices


class ScriptInfo:
    def __init__(self, name=None, is_alwayson=None, is_img2img=None, args=None):
        self.name = name
        self.is_alwayson = is_alwayson
        self.is_img2img = is_img2img
        self.args = args or []
