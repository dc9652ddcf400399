"""The worker task template renders, with A2I's Liquid filters, into a valid crowd-bounding-box task."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from liquid import Environment

from active_learning.hooks.human_workflow import MAX_TEMPLATE_CHARS
from active_learning.operators.human_workflow import DEFAULT_TEMPLATE

TEMPLATE = Path(__file__).parents[2] / "include" / "templates" / "bounding-box.liquid.html"
TASK_INPUT = {
    "taskObject": "s3://b/img.jpg",
    "labels": ["cat", "dog"],
    "initialValue": [{"label": "cat", "left": 1, "top": 2, "width": 3, "height": 4}],
}


def grant_read_access(uri: str) -> str:
    """What A2I's filter does: turn s3://bucket/key into a presigned HTTPS URL."""
    assert uri.startswith("s3://"), uri
    bucket, key = uri[5:].split("/", 1)
    return f"https://{bucket}.s3.amazonaws.com/{quote(key)}?X-Amz-Signature=abc&X-Amz-Expires=3600"


def to_json(value: Any) -> str:
    return json.dumps(value)


class _Elements(HTMLParser):
    """Every start tag with its (unescaped) attributes, and the text inside each element."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        for tag in self._open:
            self.text.setdefault(tag, []).append(data)

    def only(self, tag: str) -> dict[str, str | None]:
        found = [attrs for name, attrs in self.elements if name == tag]
        assert len(found) == 1, f"{len(found)} <{tag}> elements"
        return found[0]

    def text_of(self, tag: str) -> str:
        return " ".join(" ".join(self.text.get(tag, [])).split())


def render(task_input: dict[str, Any], read_access: Any = grant_read_access) -> str:
    env = Environment()
    env.filters["grant_read_access"] = read_access
    env.filters["to_json"] = to_json
    return env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(task={"input": task_input})


@pytest.fixture(scope="module")
def page() -> _Elements:
    parser = _Elements()
    parser.feed(render(TASK_INPUT))
    parser.close()
    return parser


def test_the_operator_uses_this_template() -> None:
    assert DEFAULT_TEMPLATE.resolve() == TEMPLATE.resolve()


def test_template_fits_a2i_limit() -> None:
    assert len(TEMPLATE.read_text(encoding="utf-8")) < MAX_TEMPLATE_CHARS == 128_000


def test_template_loads_the_crowd_elements(page: _Elements) -> None:
    assert page.only("script")["src"] == "https://assets.crowd.aws/crowd-html-elements.js"
    assert page.only("crowd-form") == {}


def test_bounding_box_shows_the_image_through_a_presigned_url(page: _Elements) -> None:
    box = page.only("crowd-bounding-box")

    assert box["src"] == "https://b.s3.amazonaws.com/img.jpg?X-Amz-Signature=abc&X-Amz-Expires=3600"


def test_bounding_box_offers_the_labels(page: _Elements) -> None:
    labels = page.only("crowd-bounding-box")["labels"]

    assert labels is not None
    assert json.loads(labels) == ["cat", "dog"]


def test_bounding_box_starts_from_the_model_boxes(page: _Elements) -> None:
    initial = page.only("crowd-bounding-box")["initial-value"]

    assert initial is not None
    assert json.loads(initial) == [{"label": "cat", "left": 1, "top": 2, "width": 3, "height": 4}]


def test_answer_is_named_annotated_result(page: _Elements) -> None:
    # The output parser reads humanAnswers[].answerContent.annotatedResult.
    assert page.only("crowd-bounding-box")["name"] == "annotatedResult"


def test_instructions_are_present(page: _Elements) -> None:
    assert page.only("full-instructions")["header"] == "How to review the model's boxes"
    assert "Delete" in page.text_of("full-instructions")
    assert "Add" in page.text_of("full-instructions")
    assert "Correct the model's boxes" in page.text_of("short-instructions")
    assert page.only("crowd-bounding-box")["header"]


def test_values_that_need_escaping_survive_the_attribute() -> None:
    labels = ['say "hi"', "a&b", "<tag>", "l'apostrophe"]
    boxes = [{"label": "a&b", "left": 0, "top": 0, "width": 10, "height": 10}]
    parser = _Elements()
    parser.feed(render({"taskObject": "s3://b/dir/my image.png", "labels": labels, "initialValue": boxes}))

    box = parser.only("crowd-bounding-box")

    assert json.loads(box["labels"] or "") == labels
    assert json.loads(box["initial-value"] or "") == boxes
    assert (
        box["src"] == "https://b.s3.amazonaws.com/dir/my%20image.png?X-Amz-Signature=abc&X-Amz-Expires=3600"
    )


def test_no_model_boxes_render_as_an_empty_list() -> None:
    parser = _Elements()
    parser.feed(render({"taskObject": "s3://b/img.jpg", "labels": ["cat"], "initialValue": []}))

    assert json.loads(parser.only("crowd-bounding-box")["initial-value"] or "") == []


def test_the_image_url_is_escaped_like_the_other_attributes() -> None:
    # The template must not rely on grant_read_access percent-encoding the key: a URL with a quote
    # or a tag in it stays inside the src attribute.
    def unencoded_read_access(uri: str) -> str:
        return "https://b.s3.amazonaws.com/" + uri.split("/", 3)[3] + "?X-Amz-Signature=abc&X-Amz-Expires=1"

    key = 'dir/a"b<c>\'d&e.jpg" onerror="alert(1)'
    parser = _Elements()
    parser.feed(render({**TASK_INPUT, "taskObject": f"s3://b/{key}"}, unencoded_read_access))
    parser.close()

    box = parser.only("crowd-bounding-box")
    assert box["src"] == f"https://b.s3.amazonaws.com/{key}?X-Amz-Signature=abc&X-Amz-Expires=1"
    assert "onerror" not in box
    assert json.loads(box["labels"] or "") == ["cat", "dog"]
    assert [tag for tag, _ in parser.elements].count("script") == 1
