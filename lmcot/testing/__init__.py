"""Test and offline-quickstart helpers: a local OpenAI-compatible server and a gold-data oracle.

Importing this package is cheap (stdlib only); nothing here is needed at inference time.
"""

from lmcot.testing.oracle_responder import FALLBACK, OracleExample, OracleResponder, load_examples
from lmcot.testing.oracle_server import OracleServer, RequestRecord

__all__ = ["FALLBACK", "OracleExample", "OracleResponder", "OracleServer", "RequestRecord", "load_examples"]
