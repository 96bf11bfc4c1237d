"""Minimal reference servers for the comparison benchmark (see ``bench/README.md``).

Every server takes ``--port`` (0 picks a free one) and prints ``ready HOST:PORT`` once it
accepts connections. Clients register with an id and receive one ``hello`` message once
registered; a control channel asks for ``broadcast`` (the same payload to every client)
or ``send`` (one payload to one client id). The exact wire per family is in
``_common.py``.
"""
