"""The HTTP gateway: producers that cannot speak Celery's protocol reach the same queues over HTTP.

Optional: ``pip install 'stepper-fleet[gateway]'`` brings FastAPI and uvicorn, and nothing outside this package
(and ``stepper gateway``) imports them, so workers and ``import stepper`` never need them.
"""
