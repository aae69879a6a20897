"""The programs ``bench/suite.py`` measures the harness against, each run as a fresh process.

``bare.py`` (the floor), ``langgraph_peer.py`` (LangGraph, SqliteSaver, durability="sync") and
``dbos_peer.py`` (DBOS on SQLite): ``python bench/peers/X.py --tasks N --parallel 1|2 --dir D``;
``--check`` reads back the durable state a run left in ``D``. See each program's docstring.
"""
