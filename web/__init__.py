"""The web mode: a Flask prediction service served by gunicorn.

:func:`deploy_modes.web.app.create_app` builds the app from a model service and settings;
:mod:`deploy_modes.web.wsgi` is the one wiring module gunicorn loads.
"""
