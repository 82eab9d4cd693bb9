"""An empty config module: the test process runs on stepper's packaged defaults, whatever celeryconfig.py says.

It must exist, because Celery itself also imports the module named by CELERY_CONFIG_MODULE.
"""
