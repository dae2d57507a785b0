"""The fake OpenAI-compatible server lives in the package (benchmarks use it too); tests import it
from here."""

from webscale_rl.llm.fake_server import INJECTION_MARKER, SUBTLE_INJECTION, FakeOpenAI, _doc, plausible_reply

__all__ = ["FakeOpenAI", "INJECTION_MARKER", "SUBTLE_INJECTION", "plausible_reply", "_doc"]
