"""The label server: the page people label on, its JSON API, login by invite (Starlette).

Starlette and uvicorn are the ``server`` extra; nothing outside this package (and
``gtx_stream/cli/label_server.py``) imports them.
"""
