"""Computeflow node agent: detects this machine's accelerators and reports them to the platform.

    python -m nodeagent --server https://computeflow.example --token cfa_... [--interval 30] [--once]
    python -m nodeagent --server http://127.0.0.1:8000 --token cfa_... --simulate "H100 SXM5 80GB:8" --once

It uses only the public agent API (/api/agent/register/, /api/agent/heartbeat/, /api/agent/usage/) and needs nothing
from the server's code: the standard library, `requests`, and optionally `nvidia-ml-py`.
"""

__version__ = "0.1.0"
