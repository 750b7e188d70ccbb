"""The shared types against the payload that subscribers receive.

``consumer.NewArticle`` is written out field by field (a consumer reads it without our
pipeline), so nothing but this test ties it to ``model.Article``: every stored field of
an article reaches subscribers, with the same type.
"""

from __future__ import annotations

from aggregator.consumer import ArticleSource, NewArticle, Sighting
from aggregator.model import Article

# Per sighting (in ``NewArticle.sources``) or the pipeline's own: not article columns.
NOT_IN_PAYLOAD = {"url", "guid", "feed_hash", "story_print"}


def test_new_article_carries_every_article_field_with_its_type() -> None:
    payload = NewArticle.model_fields
    for name, field in Article.model_fields.items():
        if name in NOT_IN_PAYLOAD:
            continue
        assert name in payload, f"NewArticle lacks Article.{name}"
        assert payload[name].annotation == field.annotation, name


def test_what_the_payload_adds_is_what_storing_adds() -> None:
    added = set(NewArticle.model_fields) - set(Article.model_fields)
    assert added == {"schema_version", "id", "story_id", "first_seen_at", "updated_at", "sources"}
    assert set(Article.model_fields) >= NOT_IN_PAYLOAD


def test_a_sighting_has_one_name() -> None:
    assert ArticleSource is Sighting
    assert NewArticle.model_fields["sources"].annotation == list[Sighting]
