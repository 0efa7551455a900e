"""Exits 0 when the library accepts a config with a `gateway` section (it
ignores it), else 1: docs/config.md's one-file example runs only then."""

import sys

import llmux

config = {
    "providers": [{"slug": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}],
    "models": [{"slug": "a/b", "endpoints": [{"provider": "p", "upstream_model": "m"}]}],
    "gateway": {},
}
try:
    llmux.Router(config).close()
except llmux.LLMuxError as e:
    print(e, file=sys.stderr)
    sys.exit(1)
