"""DataTrove's own answer for documents: its GopherRepetitionFilter, GopherQualityFilter,
C4QualityFilter and FineWebQualityFilter with default parameters, chained as a pipeline chains
them (C4 rewrites the text the next filter reads). A test-only dependency (`pip install
datatrove spacy orjson`)."""

from __future__ import annotations


def filters():
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    return [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()]


def first_failure(text: str, chain=None) -> str | None:
    """DataTrove's reason for removing `text` (the first filter's), None when all four keep it."""
    from datatrove.data import Document

    doc = Document(text=text, id="d")
    for f in chain or filters():
        result = f.filter(doc)
        if result is not True:
            return result[1] if isinstance(result, tuple) else "removed"
    return None
