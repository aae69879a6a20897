"""The web dashboard: ``harness ui`` (needs the ``ui`` extra: ``pip install 'harness[ui]'``)."""
