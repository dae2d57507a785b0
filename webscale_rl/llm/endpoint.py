"""Which OpenAI-compatible endpoint a run talks to, and for how long.

provider "local": the embedded llama.cpp server, started on a free port for the run and stopped
at its end (also on error and Ctrl-C). provider "openai": `llm.base_url`, else $OPENAI_BASE_URL,
else OpenAI itself. "azure": `llm.azure_endpoint` + `llm.api_version`, models are deployment names.
"databricks": `llm.base_url` or $DATABRICKS_HOST/serving-endpoints, a Databricks token as the key.
The key comes from `secrets.find_api_key` (the variable named by `llm.api_key_env`, else a
Databricks secret) and goes nowhere but the request header.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..config import Config, ConfigError
from .secrets import find_api_key, key_source


@dataclass
class Endpoint:
    base_url: str | None
    api_key: str | None = field(default=None, repr=False)
    description: str = ""


@contextmanager
def llm_endpoint(cfg: Config, log: Callable[[str], None] = print) -> Iterator[Endpoint]:
    if cfg.llm.provider == "local":
        from .local_server import LocalLLMServer

        with LocalLLMServer(cfg.local_llm, log=log) as server:
            yield Endpoint(base_url=server.base_url, api_key=None, description=f"embedded {cfg.local_llm.model} at {server.base_url}")
        return
    key = find_api_key(cfg)
    source = key_source(cfg)
    if cfg.llm.provider == "azure":
        if not key:
            raise ConfigError(f"llm.provider is 'azure' but {source} is not set; export the Azure OpenAI key")
        yield Endpoint(base_url=None, api_key=key, description=f"Azure OpenAI {cfg.llm.azure_endpoint} (api-version {cfg.llm.api_version})")
        return
    if cfg.llm.provider == "databricks":
        host = os.environ.get("DATABRICKS_HOST")
        base_url = cfg.llm.base_url or (f"{host.rstrip('/')}/serving-endpoints" if host else None)
        if not base_url or not key:
            raise ConfigError(
                f"llm.provider is 'databricks': set llm.base_url (https://<workspace>/serving-endpoints) or $DATABRICKS_HOST, and the token in {source}"
            )
        yield Endpoint(base_url=base_url, api_key=key, description=f"Databricks model serving {base_url}")
        return
    base_url = cfg.llm.base_url or os.environ.get("OPENAI_BASE_URL") or None
    if not key and base_url is None:
        raise ConfigError(
            f"llm.provider is 'openai' but {source} is not set; export the key (or set llm.base_url / $OPENAI_BASE_URL for a server that needs none)"
        )
    yield Endpoint(base_url=base_url, api_key=key, description=f"OpenAI-compatible endpoint {base_url or 'api.openai.com'}")
