"""The WSGI app with the clock moved by ``SACCO_TEST_CLOCK`` (``tests/clockshift.py``):
gunicorn serves ``tests.e2e.clocked_wsgi:app`` where an end-to-end test needs the server
to live on another day (``test_member_life.py`` restarts it month by month). Without the
variable it is the ordinary ``wsgi:app``."""

from tests import clockshift

clockshift.start()

from wsgi import app  # noqa: E402  (the clock moves before the app reads it)

__all__ = ["app"]
